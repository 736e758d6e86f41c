"""Configs of the equivariance-error experiment (issue 8, part 4)."""


def default() -> dict:
    return {
        "seed": 0,
        "n_digits": 16,             # MNIST test digits the errors are measured on
        "angle_step_degrees": 5,
        "input_blur_sigma": 1.0,    # px; band-limits the digits for the layer curves (see run.py)
        "layer_seeds": 8,           # random initialisations averaged (RMS) per layer
        "n_train": 10_000,          # for the networks' "after training" curves
        "epochs": 1,
        "batch_size": 128,
        "learning_rate": 1e-3,
    }


def smoke() -> dict:
    return {**default(), "n_digits": 2, "angle_step_degrees": 45, "layer_seeds": 2, "n_train": 256,
            "batch_size": 64}


CONFIGS = {"default": default, "smoke": smoke}
