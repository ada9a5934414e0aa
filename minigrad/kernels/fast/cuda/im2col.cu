// im2col and col2im as CUDA kernels: the same column layout as minigrad/kernels/im2col.py.
//
//     cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*sH + i*dH, ow*sW + j*dW]
//     cols.shape == (C * kH * kW, N * H_out * W_out)      x.shape == (N, C, H, W)
//
// Both arrays are C-contiguous, so element [a, b, c, d] of an (A, B, C, D) array sits at the flat
// offset ((a*B + b)*C + c)*D + d, and a flat offset splits back into indices with % and /:
// d = offset % D, then offset /= D, and so on from the last axis to the first.
//
// One thread per *output* element: im2col's thread writes one entry of cols, col2im's thread writes one
// pixel of x. No two threads write the same place, so there are no atomics and no races, and the result
// does not depend on the order the threads run in.
//
// The launch is a 1-D grid: thread number `blockIdx.x * blockDim.x + threadIdx.x`. When the grid has
// fewer threads than there are elements (the Python loader caps the number of blocks), each thread also
// takes the elements one grid-size further on (a "grid-stride loop"); with enough blocks every thread
// does exactly one element.
//
// Flat offsets are `long long` (64-bit): a large batch of columns can hold more than 2^31 elements.
// The sizes themselves are `int`. The Python loader passes numpy.int32 / numpy.int64 scalars to match.
//
// The kernels are written once as templates over the element type T and instantiated for float and
// double by the `extern "C"` functions at the bottom (extern "C" keeps their names unmangled, so CuPy
// can find them by name). No #include: NVRTC, which CuPy compiles with, has no C++ standard headers.

// x (N, C, H, W) -> cols (C*kH*kW, N*H_out*W_out); `total` = the number of entries of cols.
template <typename T>
__device__ void im2col_kernel(const T* x, T* cols, int batch, int channels, int height, int width,
                              int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top,
                              int pad_left, int dilation_h, int dilation_w, int out_h, int out_w,
                              long long total) {
    const long long columns = (long long)batch * out_h * out_w;  // length of one row of cols
    const long long grid_size = (long long)gridDim.x * blockDim.x;
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x; index < total;
         index += grid_size) {
        // index = row * columns + column; the row is (c, i, j), the column is (n, oh, ow).
        const long long row = index / columns;
        long long column = index % columns;
        const int ow = (int)(column % out_w);
        column /= out_w;
        const int oh = (int)(column % out_h);
        const int n = (int)(column / out_h);
        const int j = (int)(row % kernel_w);
        const int i = (int)((row / kernel_w) % kernel_h);
        const int c = (int)(row / ((long long)kernel_w * kernel_h));

        // Tap (i, j) of window (oh, ow) reads padded pixel (oh*sH + i*dH, ow*sW + j*dW). Subtracting the
        // top/left padding turns that into a pixel of x, or a place outside x: the padding, a zero.
        const int pixel_row = oh * stride_h + i * dilation_h - pad_top;
        const int pixel_col = ow * stride_w + j * dilation_w - pad_left;
        const bool inside = pixel_row >= 0 && pixel_row < height && pixel_col >= 0 && pixel_col < width;
        const long long offset = (((long long)n * channels + c) * height + pixel_row) * width + pixel_col;
        cols[index] = inside ? x[offset] : (T)0;
    }
}

// cols (C*kH*kW, N*H_out*W_out) -> x (N, C, H, W), the adjoint of im2col: each pixel of x receives the sum
// of every column entry that im2col copied from it. A *gather*: the thread of pixel (n, c, row, col) finds
// those entries itself, instead of every column entry adding into x (a scatter, which needs atomics
// where windows overlap). `total` = the number of pixels of x.
template <typename T>
__device__ void col2im_kernel(const T* cols, T* x, int batch, int channels, int height, int width,
                              int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_top,
                              int pad_left, int dilation_h, int dilation_w, int out_h, int out_w,
                              long long total) {
    const long long columns = (long long)batch * out_h * out_w;
    const long long grid_size = (long long)gridDim.x * blockDim.x;
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x; index < total;
         index += grid_size) {
        // index = ((n*C + c)*H + pixel_row)*W + pixel_col; the windows live in padded coordinates.
        const int pixel_col = (int)(index % width);
        const int pixel_row = (int)((index / width) % height);
        const int c = (int)((index / ((long long)width * height)) % channels);
        const int n = (int)(index / ((long long)width * height * channels));
        const int padded_row = pixel_row + pad_top;
        const int padded_col = pixel_col + pad_left;

        // Tap i of window oh reads padded row oh*sH + i*dH. So this pixel is tap i of window
        // oh = (padded_row - i*dH) / sH, provided that difference is >= 0, divisible by the stride, and
        // oh < H_out. Same for the columns. Taps are added in (i, j) order, as the array version in
        // im2col.py adds them, so the two give bit-identical sums.
        T sum = (T)0;
        for (int i = 0; i < kernel_h; ++i) {
            const int row_offset = padded_row - i * dilation_h;
            if (row_offset < 0 || row_offset % stride_h != 0 || row_offset / stride_h >= out_h) continue;
            const int oh = row_offset / stride_h;
            for (int j = 0; j < kernel_w; ++j) {
                const int column_offset = padded_col - j * dilation_w;
                if (column_offset < 0 || column_offset % stride_w != 0 || column_offset / stride_w >= out_w)
                    continue;
                const int ow = column_offset / stride_w;
                const long long row = ((long long)c * kernel_h + i) * kernel_w + j;
                const long long column = ((long long)n * out_h + oh) * out_w + ow;
                sum += cols[row * columns + column];
            }
        }
        x[index] = sum;
    }
}

// The entry points CuPy launches, one per element type. All four share one signature shape:
// (input pointer, output pointer, 14 sizes as int, total as long long).
extern "C" __global__ void im2col_float(const float* x, float* cols, int batch, int channels, int height,
                                        int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
                                        int pad_top, int pad_left, int dilation_h, int dilation_w,
                                        int out_h, int out_w, long long total) {
    im2col_kernel<float>(x, cols, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w,
                         pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, total);
}

extern "C" __global__ void im2col_double(const double* x, double* cols, int batch, int channels,
                                         int height, int width, int kernel_h, int kernel_w, int stride_h,
                                         int stride_w, int pad_top, int pad_left, int dilation_h,
                                         int dilation_w, int out_h, int out_w, long long total) {
    im2col_kernel<double>(x, cols, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w,
                          pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, total);
}

extern "C" __global__ void col2im_float(const float* cols, float* x, int batch, int channels, int height,
                                        int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
                                        int pad_top, int pad_left, int dilation_h, int dilation_w,
                                        int out_h, int out_w, long long total) {
    col2im_kernel<float>(cols, x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w,
                         pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, total);
}

extern "C" __global__ void col2im_double(const double* cols, double* x, int batch, int channels,
                                         int height, int width, int kernel_h, int kernel_w, int stride_h,
                                         int stride_w, int pad_top, int pad_left, int dilation_h,
                                         int dilation_w, int out_h, int out_w, long long total) {
    col2im_kernel<double>(cols, x, batch, channels, height, width, kernel_h, kernel_w, stride_h, stride_w,
                          pad_top, pad_left, dilation_h, dilation_w, out_h, out_w, total);
}
