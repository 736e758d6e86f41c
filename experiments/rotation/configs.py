"""Configs of the rotation experiment. ``default`` is the README's main job (< 30 min on 2 CPU cores)."""


def default() -> dict:
    return {
        "seed": 0,
        "n_train": 60_000,          # upright MNIST training digits
        "n_test": 10_000,           # test digits, each evaluated at every angle
        "angle_step_degrees": 5,
        "batch_size": 128,
        "learning_rate": 1e-3,
        # model name -> epochs (Adam, constant learning rate)
        "models": {"Z2CNN": 3, "Z2CNN + rotation augmentation": 3, "P4CNN": 3, "C8 G-CNN": 3},
    }


def smoke() -> dict:
    return {
        "seed": 0,
        "n_train": 512,
        "n_test": 128,
        "angle_step_degrees": 45,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "models": {"Z2CNN": 1, "Z2CNN + rotation augmentation": 1, "P4CNN": 1, "C8 G-CNN": 1},
    }


CONFIGS = {"default": default, "smoke": smoke}
