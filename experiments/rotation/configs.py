"""Configs of the rotation experiment. ``default`` is the README's main job (< 30 min on 2 CPU cores).

The default trains on 30,000 of the 60,000 upright training digits for 3-5 epochs and sweeps the
rotation angle on the first 2,000 test digits (72 angles x 2,000 = 144,000 evaluations per
model): the full protocol (all 60k / 10k, more epochs) is ``full``, for a longer run or a GPU.
"""


def default() -> dict:
    return {
        "seed": 0,
        "n_train": 30_000,          # upright MNIST training digits
        "n_test": 2_000,            # test digits, each evaluated at every angle
        "angle_step_degrees": 5,
        "batch_size": 128,
        "learning_rate": 1e-3,
        # model name -> epochs (Adam, constant learning rate)
        "models": {"Z2CNN": 3, "Z2CNN + rotation augmentation": 5, "P4CNN": 3, "C8 G-CNN": 3},
    }


def full() -> dict:
    return {**default(), "n_train": 60_000, "n_test": 10_000,
            "models": {"Z2CNN": 10, "Z2CNN + rotation augmentation": 20, "P4CNN": 10, "C8 G-CNN": 10}}


def smoke() -> dict:
    return {
        "seed": 0,
        "n_train": 256,
        "n_test": 64,
        "angle_step_degrees": 45,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "models": {"Z2CNN": 1, "Z2CNN + rotation augmentation": 1, "P4CNN": 1, "C8 G-CNN": 1},
    }


CONFIGS = {"default": default, "full": full, "smoke": smoke}
