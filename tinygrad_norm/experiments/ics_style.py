"""ICS part (f), InstanceNorm for style and generation (Ulyanov et al. 2016, "Instance
Normalization: The Missing Ingredient for Fast Stylization"), and an AdaIN step (Huang &
Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization").

Task: a small image-to-image generator restores the digits from copies with a random "style",
contrast a and brightness b per image (input a·x + b, target x). The generator is
Conv1x1 -> norm -> ReLU -> Conv3x3 -> norm -> ReLU -> Conv3x3, once with BatchNorm2d and once
with InstanceNorm2d(affine=True). The first conv is 1x1, so a·x + b maps to a·conv(x) plus a
per-channel constant and InstanceNorm (a > 0) removes both exactly, for every image on its own;
BatchNorm removes only the batch's average style, so each image's output carries its own
contrast and brightness, and in training mode also its batch-mates'.

AdaIN(content, style) = sigma(style)·(content - mu(content)) / sigma(content) + mu(style), per
sample and channel: InstanceNorm of the content (our kernels) with the style's statistics as
its affine parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import nn, optim
from ..autograd import no_grad
from ..data import load_digits
from ..random import manual_seed
from ..tensor import Tensor
from .results import figure, format_table, save_figure

NORMS = {"batch": "BatchNorm", "instance": "InstanceNorm"}
CONTRASTS = (0.25, 0.5, 1.0, 2.0, 4.0)
BRIGHTNESSES = (-1.0, 0.0, 1.0)


def make_generator(norm: str, channels: int) -> nn.Sequential:
    def norm_layer() -> nn.Module:
        return (nn.BatchNorm2d(channels) if norm == "batch"
                else nn.InstanceNorm2d(channels, affine=True))
    return nn.Sequential(nn.Conv2d(1, channels, 1), norm_layer(), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1), norm_layer(), nn.ReLU(),
                         nn.Conv2d(channels, 1, 3, padding=1))


def restyle(images: np.ndarray, contrast, brightness) -> np.ndarray:
    """a·x + b with a per-image (or one) contrast a and brightness b."""
    shape = (-1, 1, 1, 1)
    return (np.reshape(contrast, shape) * images + np.reshape(brightness, shape)).astype(
        np.float32)


def random_styles(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Contrast log-uniform in [0.25, 4] and brightness uniform in [-1, 1]."""
    return np.exp(rng.uniform(np.log(0.25), np.log(4), count)), rng.uniform(-1, 1, count)


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Per sample and channel: content normalized (InstanceNorm), then scaled and shifted to
    the style's std and mean. content and style are (N, C, H, W)."""
    planes = style.data.reshape(style.shape[0], style.shape[1], -1).astype(np.float64)
    std = Tensor(np.sqrt(planes.var(axis=2) + eps).astype(content.dtype)[:, :, None, None])
    mean = Tensor(planes.mean(axis=2).astype(content.dtype)[:, :, None, None])
    return nn.functional.instance_norm(content, eps=eps) * std + mean


def predict(model: nn.Module, images: np.ndarray, train_mode: bool = False) -> np.ndarray:
    model.train(train_mode)
    with no_grad():
        out = model(Tensor(images)).numpy()
    model.train()
    return out


def train(norm: str, x_train: np.ndarray, steps: int, channels: int, seed: int,
          progress: bool) -> nn.Module:
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = make_generator(norm, channels)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    for _ in tqdm(range(steps), disable=not progress, leave=False, desc=f"generator {norm}"):
        clean = x_train[rng.integers(0, len(x_train), 32)]
        optimizer.zero_grad()
        loss = ((model(Tensor(restyle(clean, *random_styles(rng, 32)))) - Tensor(clean))
                ** 2).mean()
        loss.backward()
        optimizer.step()
    return model


def measure(model: nn.Module, x_test: np.ndarray, rng: np.random.Generator) -> dict:
    """Test MSE against the clean digits for random styles; the output change against the
    style (1, 0) per contrast and per brightness; the training-mode output change of 16 images
    when their batch-mates are faint (a = 0.25) instead of strong (a = 4)."""
    clean = x_test[:256]
    canonical = predict(model, clean)
    styled = restyle(clean, *random_styles(rng, len(clean)))
    change = {
        "contrast": [float(np.abs(predict(model, restyle(clean, a, 0.0)) - canonical).mean())
                     for a in CONTRASTS],
        "brightness": [float(np.abs(predict(model, restyle(clean, 1.0, b)) - canonical).mean())
                       for b in BRIGHTNESSES],
    }
    probes, mates = clean[:16], clean[16:48]
    outputs = [predict(model, np.concatenate([probes, restyle(mates, a, 0.0)]),
                       train_mode=True)[:16] for a in (0.25, 4.0)]
    return {"test_mse": float(((predict(model, styled) - clean) ** 2).mean()),
            "identity_mse": float(((styled - clean) ** 2).mean()),
            "output_change": change,
            "batch_dependence": float(np.abs(outputs[0] - outputs[1]).mean())}


def adain_check(model: nn.Module, x_test: np.ndarray) -> dict:
    """AdaIN of digit 0's features (the first conv's channels) onto digit 1's restyled
    copy: the largest difference between the per-channel means and stds after AdaIN and the
    style's; and AdaIN in pixel space, which gives the content digit the style's contrast and
    brightness."""
    content, style = x_test[:1], restyle(x_test[1:2], 0.3, 0.6)
    with no_grad():
        features_c, features_s = model[0](Tensor(content)), model[0](Tensor(style))
        channels = features_c.shape[1]
        moved = adain(features_c, features_s).numpy().reshape(channels, -1)
        pixels = adain(Tensor(content), Tensor(style)).numpy()
    target = features_s.numpy().reshape(channels, -1)
    return {"feature_mean_error": float(np.abs(moved.mean(1) - target.mean(1)).max()),
            "feature_std_error": float(np.abs(moved.std(1) - np.sqrt(target.var(1) + 1e-5))
                                       .max()),
            "pixel_mean_std": [float(pixels.mean()), float(pixels.std())],
            "style_mean_std": [float(style.mean()), float(style.std())],
            "content_mean_std": [float(content.mean()), float(content.std())],
            "images": {"content": content[0, 0].tolist(), "style": style[0, 0].tolist(),
                       "adain": pixels[0, 0].tolist()}}


def plot(out: Path, models: dict, results: dict, x_test: np.ndarray, adain_result: dict) -> None:
    fig, axes = figure(1, 3, width=3.8, height=3.2)
    digit = x_test[2:3]
    styles = [(0.25, 0.0), (1.0, 0.0), (4.0, 0.0), (1.0, -1.0), (1.0, 1.0)]
    grid = np.zeros((3 * 9, len(styles) * 9))
    for j, (a, b) in enumerate(styles):
        styled = restyle(digit, a, b)
        tiles = [(styled - styled.min()) / (np.ptp(styled) + 1e-9),
                 *(np.clip(predict(models[n], styled), 0, 1) for n in NORMS)]
        for i, tile in enumerate(tiles):
            grid[9 * i:9 * i + 8, 9 * j:9 * j + 8] = tile[0, 0]
    axes[0, 0].imshow(grid, cmap="gray_r")
    axes[0, 0].set(title="input (rescaled) / BN out / IN out",
                   xticks=[9 * j + 4 for j in range(len(styles))],
                   xticklabels=[f"{a:g},{b:+g}" for a, b in styles], yticks=[4, 13, 22],
                   yticklabels=["input", "BN", "IN"])
    axes[0, 0].set_xlabel("style: contrast, brightness", fontsize=8)
    shown = [i for i, a in enumerate(CONTRASTS) if a != 1]  # a = 1 is the reference: 0
    for norm, name in NORMS.items():
        change = results[norm]["output_change"]["contrast"]
        axes[0, 1].plot([CONTRASTS[i] for i in shown], [change[i] for i in shown], "o-",
                        label=name)
    axes[0, 1].set(xscale="log", yscale="log", xlabel="contrast a (brightness 0)",
                   ylabel="mean |output - output at a=1|", title="style (in)dependence")
    axes[0, 1].set_xticks([CONTRASTS[i] for i in shown], [f"{CONTRASTS[i]:g}" for i in shown])
    axes[0, 1].minorticks_off()
    axes[0, 1].legend(fontsize=8)
    images = adain_result["images"]
    strip = np.concatenate([np.array(images[k]) for k in ("content", "style", "adain")], 1)
    axes[0, 2].imshow(strip, cmap="gray_r", vmin=0, vmax=1)
    axes[0, 2].set(title="AdaIN: content, style, result", xticks=[], yticks=[])
    save_figure(fig, out / "style.png")


def run(out: Path, steps: int = 300, channels: int = 16, seed: int = 0,
        progress: bool = True) -> dict:
    print(f"\n(f) Ulyanov et al.: a 3-conv generator restores digits from random contrast "
          f"(0.25-4) and brightness (-1..1), {steps} Adam steps, with BatchNorm and "
          f"InstanceNorm; AdaIN (Huang & Belongie)")
    x_train, _, x_test, _ = load_digits(seed=0, images=True)
    models = {norm: train(norm, x_train, steps, channels, seed, progress) for norm in NORMS}
    results = {norm: measure(model, x_test, np.random.default_rng(seed + 1))
               for norm, model in models.items()}
    rows = [["test MSE (random styles)", *(r["test_mse"] for r in results.values())]]
    rows += [[f"output change, contrast {a:g}", *(r["output_change"]["contrast"][i]
                                                  for r in results.values())]
             for i, a in enumerate(CONTRASTS) if a != 1]
    rows += [[f"output change, brightness {b:+g}", *(r["output_change"]["brightness"][i]
                                                     for r in results.values())]
             for i, b in enumerate(BRIGHTNESSES) if b != 0]
    rows.append(["output change with other batch-mates",
                 *(r["batch_dependence"] for r in results.values())])
    print(format_table(["", *NORMS.values()], rows))
    print(f"    (returning the input unchanged: MSE {results['batch']['identity_mse']:.4g})")
    adain_result = adain_check(models["instance"], x_test)
    print(f"    AdaIN of the {channels} feature channels: per-channel mean off by at most "
          f"{adain_result['feature_mean_error']:.2g}, std by "
          f"{adain_result['feature_std_error']:.2g}; in pixels, mean/std "
          f"{adain_result['content_mean_std'][0]:.3f}/{adain_result['content_mean_std'][1]:.3f}"
          f" -> {adain_result['pixel_mean_std'][0]:.3f}/{adain_result['pixel_mean_std'][1]:.3f}"
          f" (style {adain_result['style_mean_std'][0]:.3f}/"
          f"{adain_result['style_mean_std'][1]:.3f})")
    plot(out, models, results, x_test, adain_result)
    return {"steps": steps, "channels": channels, "contrasts": list(CONTRASTS),
            "brightnesses": list(BRIGHTNESSES), "norms": results, "adain": adain_result}
