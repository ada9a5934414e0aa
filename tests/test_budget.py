"""``minigrad train --time-budget`` (minigrad/budget.py): the sizing arithmetic against brute force, the speed
measured on an injected clock (no real waiting) without disturbing the run, the planned length in the
checkpoint so that an interrupted and resumed budget run equals the uninterrupted one bit for bit, budgets
too short, and the class-period recipe under options typed on the command line."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy
import pytest

from minigrad import backend, budget, cli, train
from minigrad.budget import BudgetTooShort, Plan, Speed, plan_steps
from minigrad.train import TrainConfig
from tests.test_train import (  # noqa: F401  (one_blas_thread: an autouse fixture)
    assert_same_run,
    interrupt_at,
    one_blas_thread,
    read_checkpoint_raw,
    tiny_config,
    without_timings,
)


def cost(steps: int, speed: Speed, steps_per_epoch: int) -> float:
    """Seconds that ``steps`` steps take, with an evaluation and the files after every (started) epoch."""
    return steps * speed.step_seconds + math.ceil(steps / steps_per_epoch) * (speed.eval_seconds + budget.EPOCH_FILES_S)


def brute_force_steps(budget_s: float, spent_s: float, speed: Speed, steps_per_epoch: int) -> int:
    """The largest T whose cost fits, found by trying every T."""
    left = budget_s * (1 - budget.MARGIN) - spent_s
    fitting = [steps for steps in range(1, int(left / speed.step_seconds) + 2)
               if cost(steps, speed, steps_per_epoch) <= left]
    return max(fitting, default=0)


# ----- the arithmetic -----------------------------------------------------------------------------------
@pytest.mark.parametrize("step_s, eval_s, steps_per_epoch, spent_s",
                         list(itertools.product([0.5, 1.3, 4.0], [0.0, 7.0, 60.0], [5, 40, 351], [0.0, 45.0])))
def test_plan_is_the_longest_run_that_fits(step_s, eval_s, steps_per_epoch, spent_s):
    speed = Speed(step_s, eval_s)
    for budget_s in (300.0, 1200.0, 2700.0):
        expected = brute_force_steps(budget_s, spent_s, speed, steps_per_epoch)
        try:
            plan = plan_steps(budget_s, spent_s, speed, steps_per_epoch)
        except BudgetTooShort:
            assert expected < budget.MIN_STEPS
            continue
        assert plan.total_steps == expected >= budget.MIN_STEPS
        assert plan.epochs == math.ceil(expected / steps_per_epoch)
        assert plan.seconds == pytest.approx(cost(expected, speed, steps_per_epoch))
        assert spent_s + plan.seconds <= budget_s * (1 - budget.MARGIN)
        assert bool(plan.note) == (expected < steps_per_epoch)


def test_a_worked_example():
    # 950 s to plan with (5% of 1000 kept back); 12 s per epoch for its evaluation and files; 1 s per step:
    # 8 whole epochs (800 + 96 s) fit, a 9th adds 108 s of evaluations and leaves room for 42 of its steps.
    plan = plan_steps(1000.0, 0.0, Speed(1.0, 10.0), 100)
    assert plan == Plan(842, 9, 842 + 9 * 12.0)


def test_less_than_one_epoch_trains_what_fits_and_says_so():
    plan = plan_steps(600.0, 30.0, Speed(2.0, 40.0), 351)  # (570 - 30 - 42) s to train in: 249 steps of 2 s
    assert (plan.total_steps, plan.epochs) == (249, 1)
    assert "less than one epoch fits (249 of its 351 steps" in plan.note and "needs --time-budget" in plan.note


def test_a_budget_with_room_for_almost_no_steps_is_refused_with_what_to_change():
    with pytest.raises(BudgetTooShort) as caught:
        plan_steps(60.0, 40.0, Speed(2.0, 5.0), 351)  # 57 - 40 - 7 s: 5 steps of 2 s
    message = str(caught.value)
    assert message.startswith("--time-budget 1 min leaves room for 5 training step(s): at the measured 2 s per step, "
                              "one epoch (351 steps) and its evaluation (5 s) take 11.8 min")
    needed = float(message.split("Give --time-budget ")[1].split()[0])
    assert plan_steps(needed * 60, 40.0, Speed(2.0, 5.0), 351).total_steps == 351, "the advice is enough"
    assert plan_steps((needed - 0.1) * 60, 40.0, Speed(2.0, 5.0), 351).total_steps < 351, "and not too much"


# ----- measuring on an injected clock -------------------------------------------------------------------
class TickingClock:
    """A clock that moves ``tick`` seconds each time it is read, and counts the readings."""

    def __init__(self, tick: float) -> None:
        self.tick, self.now, self.reads = tick, 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.tick
        return self.now


def test_time_calls_takes_the_median_on_the_clock(monkeypatch):
    durations = iter([5.0, 1.0, 2.0])
    now = [0.0]

    def work():
        now[0] += next(durations)

    monkeypatch.setattr(budget, "clock", lambda: now[0])
    assert budget.time_calls(work, 3) == 2.0
    durations = iter([5.0, 1.0, 2.0, 1.0, 1.0, 9.0])
    assert budget.time_calls(work, 3, min_seconds=10.0) == 1.0, "5 + 1 + 2 + 1 + 1 = 10 s: five calls"


def test_measure_speed_uses_the_clock_and_leaves_the_run_untouched(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, aux_weight=0.3)
    train_set, test_set = train.build_datasets(config)
    train_loader, test_loader = train.build_loaders(config, train_set, test_set)
    model = train.build_model(config, num_classes=10)
    before = {key: value.copy() for key, value in model.state_dict().items()}
    loader_state, rng_state = train_loader.state_dict(), backend.get_rng_state()
    clock = TickingClock(0.5)
    monkeypatch.setattr(budget, "clock", clock)

    speed = budget.measure_speed(config, 10, train_loader, test_loader)
    # Every timed call spans two readings (one tick); the 64 test images are one batch of test_loader's 256.
    assert speed == Speed(0.5, 0.5) and clock.reads == 2 * (budget.MEASURED_STEPS + 1)
    assert train_loader.state_dict() == loader_state and backend.get_rng_state() == rng_state
    assert all(numpy.array_equal(before[key], value) for key, value in model.state_dict().items())


# ----- whole runs: the planned length, in the checkpoint, resumed bit for bit ---------------------------
FAKE_SPEED = Speed(10.0, 10.0)  # "seconds" per step and per evaluation
# 4 steps per epoch; at 10 s a step and 12 s per epoch for evaluating and files, 95 s (90.25 s to plan with)
# hold 6 steps in 2 epochs (84 s), the second one cut short after 2 of its 4 batches.
BUDGET_MINUTES = 95 / 60


def pretend_to_measure(patch: pytest.MonkeyPatch, speed: Speed = FAKE_SPEED) -> list:
    """The run 'measures' ``speed`` at no cost and its clock stands still; returns the list of measurements."""
    calls: list = []
    patch.setattr(budget, "measure_speed", lambda *args: calls.append(args) or speed)
    patch.setattr(budget, "clock", lambda: 0.0)
    return calls


@pytest.fixture(scope="module")
def budget_reference(tmp_path_factory):
    """One uninterrupted budget run: (its folder, its history, the steps it took)."""
    out = tmp_path_factory.mktemp("budget-reference")
    with pytest.MonkeyPatch.context() as patch:
        pretend_to_measure(patch)
        steps = interrupt_at(patch, None)
        history = train.run(tiny_config(out, time_budget=BUDGET_MINUTES))
    return out, history, steps


def test_a_budget_run_trains_the_planned_steps_and_records_them(budget_reference):
    out, history, steps = budget_reference
    assert steps == [1, 2, 3, 4, 5, 6], "6 steps: one epoch of 4, then 2 batches of the second"
    assert [row["epoch"] for row in history] == [1, 2]
    _, meta = read_checkpoint_raw(out)
    saved = json.loads((out / "config.json").read_text())
    assert meta["config"] == saved and (saved["total_steps"], saved["epochs"]) == (6, 2)
    assert saved["time_budget"] == BUDGET_MINUTES and meta["epochs_done"] == 2
    assert meta["scheduler"]["total_steps"] == 6, "the schedule is laid out over the planned steps"

    def lr_after_the_run(config: TrainConfig) -> float:
        model = train.build_model(config, num_classes=10)
        optimizer = train.build_optimizer(config, model)
        scheduler = train.build_scheduler(config, optimizer, steps_per_epoch=4)
        for _ in range(6):
            scheduler.step()
        return optimizer.param_groups[0]["lr"]

    config = TrainConfig(**saved)
    assert history[-1]["lr"] == lr_after_the_run(config), "onecycle's end: the floor after exactly 6 steps"
    assert history[-1]["lr"] != lr_after_the_run(replace(config, total_steps=None)), "not 2 whole epochs' (8)"


@pytest.mark.parametrize("stop_step", [3, 5, 6], ids=["mid-epoch-1", "inside-the-cut-epoch", "last-step"])
def test_an_interrupted_budget_run_resumes_bit_for_bit(stop_step, budget_reference, tmp_path, monkeypatch):
    reference, history, _ = budget_reference
    measured = pretend_to_measure(monkeypatch)
    interrupt_at(monkeypatch, stop_step)
    with pytest.raises(KeyboardInterrupt):
        train.run(tiny_config(tmp_path, time_budget=BUDGET_MINUTES))
    assert len(measured) == 1
    monkeypatch.undo()
    monkeypatch.setattr(budget, "measure_speed", lambda *args: pytest.fail("a resumed run must not measure again"))
    monkeypatch.setattr(budget, "clock", lambda: 1e9)  # a slower machine today: the plan stays the plan
    resumed_steps = interrupt_at(monkeypatch, None)
    resumed_history = train.run(tiny_config(tmp_path, epochs=None, resume=True))
    assert resumed_steps == list(range(stop_step + 1, 7))
    assert without_timings(resumed_history) == without_timings(history)
    assert_same_run(tmp_path, reference)


def test_another_length_for_a_budget_run_is_refused(budget_reference):
    reference, _, _ = budget_reference
    before = (reference / "checkpoint.npz").read_bytes()
    with pytest.raises(train.CheckpointError, match=r"planned for 2 epochs \(6 steps, sized to its time budget\)"):
        train.run(tiny_config(reference, epochs=3, resume=True))
    assert (reference / "checkpoint.npz").read_bytes() == before


def test_a_budget_too_short_stops_before_writing_anything(tmp_path, monkeypatch, capsys):
    pretend_to_measure(monkeypatch, Speed(30.0, 10.0))  # 57 s to plan with: 12 s for the files, 1 step of 30 s
    status = cli.main(["train", "--width", "0.125", "--train-size", "128", "--test-size", "64", "--batch-size", "32",
                       "--time-budget", "1", "--quiet", "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 1 and error.startswith("minigrad train: --time-budget 1 min leaves room for 1 training step(s)")
    assert not (tmp_path / "run").exists()


# ----- the command line: --time-budget with --epochs, and the recipe ------------------------------------
def parsed_config(*arguments: str) -> TrainConfig:
    """The TrainConfig `minigrad train ARGUMENTS` runs with (parsed, checked, recipe applied; nothing trained)."""
    parser = cli.build_parser()
    args = parser.parse_args(["train", *arguments])
    args.argv = ["train", *arguments]
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__})
    return budget.from_command_line(config, args, args.handler.keywords["parser"])


def test_the_recipe_fills_every_option_not_typed():
    recipe = budget.CLASS_PERIOD_RECIPE
    config = parsed_config("--dataset", "folder", "--time-budget", "20", "--width", "0.25",
                           f"--batch-size={TrainConfig.batch_size}")
    assert config.width == 0.25 and config.batch_size == TrainConfig.batch_size, "typed options win, even defaults"
    assert all(getattr(config, key) == value for key, value in recipe.items() if key not in ("width", "batch_size"))
    assert TrainConfig.batch_size != recipe["batch_size"], "else the test above proves nothing"
    assert parsed_config("--dataset", "cifar10", "--time-budget", "45").lr == recipe["lr"]
    assert parsed_config("--dataset", "shapes", "--time-budget", "5").width == TrainConfig.width, "not for shapes"
    assert parsed_config("--dataset", "folder").width == TrainConfig.width, "not without a budget"


def test_time_budget_and_epochs_together_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["train", "--time-budget", "5", "--epochs", "2", "--out", str(tmp_path)]) == 2
    assert "give it or --epochs, not both" in capsys.readouterr().err
    assert cli.main(["train", "--time-budget", "0", "--out", str(tmp_path)]) == 2
