"""Configs of the translation experiment (the seed's Figures 3-4, and its claim about small rotations/scalings)."""


def default() -> dict:
    return {
        "seed": 0,
        "n_train": 20_000,
        "n_test": 2_000,
        "epochs": 2,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "width": 16,
        "max_shift": 6,                                  # feature change vs shift 0..max_shift px
        "consistency_pairs": 4,                          # random shift pairs per image, in [-3, 3)
        "angles": [0, 5, 10, 15, 20, 30, 45],             # small rotations (degrees)
        "scales": [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3],
    }


def smoke() -> dict:
    return {**default(), "n_train": 256, "n_test": 64, "epochs": 1, "batch_size": 64, "max_shift": 2,
            "consistency_pairs": 1, "angles": [0, 15], "scales": [0.9, 1.0]}


CONFIGS = {"default": default, "smoke": smoke}
