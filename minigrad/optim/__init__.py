"""Optimizers and learning-rate schedules, shaped like ``torch.optim``.

    >>> from minigrad import optim
    >>> optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    >>> scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=8, gamma=0.96)
    >>> loss.backward(); optimizer.step(); optimizer.zero_grad()

- optimizer.py: the ``Optimizer`` base class (parameter groups, state, state dicts and their flat form)
- sgd.py: ``SGD`` (momentum, dampening, Nesterov, weight decay)
- adam.py: ``Adam`` and ``AdamW`` (with amsgrad)
- lr_scheduler.py: ``StepLR``, ``CosineAnnealingLR``, ``LinearLR``, ``SequentialLR``, ``OneCycleLR``
"""

from minigrad.optim import lr_scheduler
from minigrad.optim.adam import Adam, AdamW
from minigrad.optim.optimizer import Optimizer, flatten_state_dict, unflatten_state_dict
from minigrad.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "flatten_state_dict", "lr_scheduler", "unflatten_state_dict"]
