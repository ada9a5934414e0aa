"""nn.init: fans and gains against torch, the spread each initialiser promises, seeding and dtypes.

Spreads are checked on 2*10^4 to 10^5 values against the formula (and against torch's own initialiser
on a tensor of the same shape): the standard error of a measured std is then at most about 0.5%, so the
3% slack (about 6 standard errors) fails by chance essentially never, while a wrong fan or gain (off by
10% or more in every case below) always fails. The tests that draw from the device's own generator take the
``device`` fixture (on "cuda" that is the counter-based CudaGenerator, whose spreads must be the same).
"""

from __future__ import annotations

import math

import numpy
import pytest
import torch

import minigrad
from minigrad import Tensor
from minigrad.nn import init

SHAPES = [(3, 4), (8, 4, 3, 3), (2, 3, 5), (6, 2, 1, 1), (4, 3, 2, 2, 2), (1, 7)]


def empty(shape, dtype=numpy.float32, device="cpu") -> Tensor:
    return Tensor(numpy.zeros(shape, dtype=dtype), device=device)


def relative_error(measured: float, expected: float) -> float:
    return abs(measured / expected - 1)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fan_in_and_fan_out_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(empty(shape)) == expected


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(5,\)"):
        init.calculate_fan_in_and_fan_out(empty((5,)))


@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("leaky_relu", 0),
])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


@pytest.mark.parametrize("nonlinearity", ["conv1d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                                          "conv_transpose3d", "selu"])
def test_calculate_gain_knows_every_name_torch_knows(nonlinearity):
    assert init.calculate_gain(nonlinearity) == pytest.approx(torch.nn.init.calculate_gain(nonlinearity), rel=1e-15)


def test_calculate_gain_refuses_unknown_nonlinearities():
    with pytest.raises(ValueError, match="calculate_gain: unknown nonlinearity 'gelu'"):
        init.calculate_gain("gelu")


# ----- the spread of each initialiser ------------------------------------------------------
# (shape, keyword arguments, expected std as a function of (fan_in, fan_out))
KAIMING_CASES = [
    ((200, 500), {}, lambda fi, fo: math.sqrt(2 / fi)),
    ((200, 500), dict(mode="fan_out"), lambda fi, fo: math.sqrt(2 / fo)),
    ((64, 32, 3, 3), dict(nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fi)),
    ((64, 32, 3, 3), dict(mode="fan_out", nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fo)),
    ((64, 32, 3, 3), dict(a=math.sqrt(5)), lambda fi, fo: math.sqrt(2 / 6 / fi)),
    ((200, 500), dict(a=1.0, mode="fan_out"), lambda fi, fo: math.sqrt(2 / 2 / fo)),
    ((200, 500), dict(nonlinearity="tanh"), lambda fi, fo: 5 / 3 / math.sqrt(fi)),
    ((200, 500), dict(nonlinearity="linear"), lambda fi, fo: 1 / math.sqrt(fi)),
]
KAIMING_IDS = ["default", "fan_out", "conv-relu", "conv-relu-fan_out", "a=sqrt5", "leaky1-fan_out", "tanh",
               "linear"]


@pytest.mark.parametrize("shape, options, std", KAIMING_CASES, ids=KAIMING_IDS)
def test_kaiming_uniform_bound_and_std(shape, options, std, device):
    expected_std = std(*init.calculate_fan_in_and_fan_out(empty(shape)))
    bound = expected_std * math.sqrt(3)  # U(-b, b) has std b/sqrt(3)
    values = init.kaiming_uniform_(empty(shape, device=device), **options).numpy()
    reference = torch.nn.init.kaiming_uniform_(torch.empty(shape), **options).numpy()
    for name, sample in (("minigrad", values), ("torch", reference)):
        assert numpy.abs(sample).max() <= bound * (1 + 1e-6), name
        assert numpy.abs(sample).max() > 0.99 * bound, name
        assert relative_error(sample.std(), expected_std) < 0.03, name
        assert abs(sample.mean()) < 0.05 * expected_std, name


@pytest.mark.parametrize("shape, options, std", KAIMING_CASES, ids=KAIMING_IDS)
def test_kaiming_normal_std(shape, options, std, device):
    expected_std = std(*init.calculate_fan_in_and_fan_out(empty(shape)))
    values = init.kaiming_normal_(empty(shape, device=device), **options).numpy()
    reference = torch.nn.init.kaiming_normal_(torch.empty(shape), **options).numpy()
    for name, sample in (("minigrad", values), ("torch", reference)):
        assert relative_error(sample.std(), expected_std) < 0.03, name
        assert abs(sample.mean()) < 0.05 * expected_std, name
    assert numpy.abs(values).max() > 3 * expected_std  # a normal's tails, not a uniform's edge


@pytest.mark.parametrize("shape", [(200, 500), (64, 32, 3, 3)], ids=str)
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)], ids=["gain1", "gain-sqrt2"])
def test_xavier_uniform_and_normal(shape, gain, device):
    fan_in, fan_out = init.calculate_fan_in_and_fan_out(empty(shape))
    expected_std = gain * math.sqrt(2 / (fan_in + fan_out))
    uniform = init.xavier_uniform_(empty(shape, device=device), gain=gain).numpy()
    assert numpy.abs(uniform).max() <= expected_std * math.sqrt(3) * (1 + 1e-6)
    assert numpy.abs(uniform).max() > 0.99 * expected_std * math.sqrt(3)
    normal = init.xavier_normal_(empty(shape, device=device), gain=gain).numpy()
    for name, sample in [
        ("uniform", uniform), ("normal", normal),
        ("torch uniform", torch.nn.init.xavier_uniform_(torch.empty(shape), gain=gain).numpy()),
        ("torch normal", torch.nn.init.xavier_normal_(torch.empty(shape), gain=gain).numpy()),
    ]:
        assert relative_error(sample.std(), expected_std) < 0.03, name
        assert abs(sample.mean()) < 0.05 * expected_std, name


def truncated_normal_moments(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    """Mean and std of N(mean, std^2) restricted to [a, b] (the textbook formulas)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    mass = cdf(beta) - cdf(alpha)
    shift = (pdf(alpha) - pdf(beta)) / mass
    variance = 1 + (alpha * pdf(alpha) - beta * pdf(beta)) / mass - shift**2
    return mean + std * shift, std * math.sqrt(variance)


@pytest.mark.parametrize("mean, std, a, b", [(0.0, 1.0, -2.0, 2.0), (0.5, 2.0, -1.0, 3.0), (0.0, 0.02, -0.04, 0.04)])
def test_trunc_normal_stays_in_bounds_with_the_truncated_moments(mean, std, a, b, device):
    values = init.trunc_normal_(empty((200, 500), numpy.float64, device), mean=mean, std=std, a=a, b=b).numpy()
    assert values.min() >= a and values.max() <= b
    assert values.min() < a + 0.01 * (b - a) and values.max() > b - 0.01 * (b - a)  # reaches both ends
    expected_mean, expected_std = truncated_normal_moments(mean, std, a, b)
    assert abs(values.mean() - expected_mean) < 0.02 * expected_std  # 6 standard errors
    assert relative_error(values.std(), expected_std) < 0.015
    reference = torch.nn.init.trunc_normal_(torch.empty(200, 500, dtype=torch.float64), mean, std, a, b).numpy()
    assert relative_error(reference.std(), expected_std) < 0.015  # the formula describes torch's too


def test_trunc_normal_default_bounds_are_absolute(device):
    """PyTorch's a=-2, b=2 are values, not multiples of std: with std=0.02 nothing is ever cut."""
    values = init.trunc_normal_(empty((100, 100), device=device), std=0.02).numpy()
    assert relative_error(values.std(), 0.02) < 0.03


def test_constant_zeros_and_ones(device):
    for dtype in (numpy.float32, numpy.float64):
        tensor = Tensor(numpy.random.default_rng(0).standard_normal((3, 4)).astype(dtype), device=device)
        assert init.zeros_(tensor) is tensor and tensor.dtype == dtype
        numpy.testing.assert_array_equal(tensor.numpy(), numpy.zeros((3, 4)))
        init.ones_(tensor)
        numpy.testing.assert_array_equal(tensor.numpy(), numpy.ones((3, 4)))
        init.constant_(tensor, 0.25)
        numpy.testing.assert_array_equal(tensor.numpy(), numpy.full((3, 4), 0.25))
        assert tensor.dtype == dtype and tensor.device == device


@pytest.mark.parametrize("initialise", [init.kaiming_uniform_, init.kaiming_normal_], ids=["uniform", "normal"])
def test_kaiming_refuses_an_unknown_mode(initialise):
    """A typo such as mode="fanin" must not silently mean fan_out."""
    with pytest.raises(ValueError, match=r"kaiming_\w+: mode must be 'fan_in' or 'fan_out', got 'fanin'"):
        initialise(empty((3, 4)), mode="fanin")


# ----- dtypes, in-place, seeding --------------------------------------------------------------
RANDOM_INITS = {
    "uniform_": lambda t, g: init.uniform_(t, -0.5, 0.5, generator=g),
    "normal_": lambda t, g: init.normal_(t, 0.0, 0.5, generator=g),
    "trunc_normal_": lambda t, g: init.trunc_normal_(t, std=0.5, generator=g),
    "kaiming_uniform_": lambda t, g: init.kaiming_uniform_(t, generator=g),
    "kaiming_normal_": lambda t, g: init.kaiming_normal_(t, mode="fan_out", generator=g),
    "xavier_uniform_": lambda t, g: init.xavier_uniform_(t, generator=g),
    "xavier_normal_": lambda t, g: init.xavier_normal_(t, generator=g),
}


@pytest.mark.parametrize("name", RANDOM_INITS)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64], ids=["float32", "float64"])
def test_initialisers_work_in_place_and_keep_the_dtype(name, dtype, device):
    tensor = Tensor(numpy.zeros((6, 5), dtype=dtype), requires_grad=True, device=device)
    data = tensor.data
    assert RANDOM_INITS[name](tensor, None) is tensor
    assert tensor.data is data and tensor.dtype == dtype and tensor.requires_grad and tensor.device == device
    assert numpy.unique(tensor.numpy()).size == 30  # every entry drawn


@pytest.mark.parametrize("name", RANDOM_INITS)
def test_generator_makes_draws_reproducible(name):
    def draw(seed):
        return RANDOM_INITS[name](empty((6, 5)), numpy.random.default_rng(seed)).numpy()

    numpy.testing.assert_array_equal(draw(1), draw(1))
    assert not numpy.array_equal(draw(1), draw(2))


@pytest.mark.parametrize("name", RANDOM_INITS)
def test_manual_seed_makes_draws_reproducible(name, device):
    def draw():
        return RANDOM_INITS[name](empty((6, 5), device=device), None).numpy()

    minigrad.manual_seed(11)
    first, second = draw(), draw()
    assert not numpy.array_equal(first, second)  # the generator moves on
    minigrad.manual_seed(11)
    numpy.testing.assert_array_equal(draw(), first)


def test_a_generator_leaves_the_global_stream_alone():
    minigrad.manual_seed(5)
    expected = init.normal_(empty((4,))).numpy()
    minigrad.manual_seed(5)
    init.normal_(empty((4,)), generator=numpy.random.default_rng(0))
    numpy.testing.assert_array_equal(init.normal_(empty((4,))).numpy(), expected)
