"""A model's summary: registry facts, parameters, stages and a forward pass on a dummy image."""
import paddle

from .arch import count_params, create_model, model_info


def summarize(name, image_size=224, **create_kwargs):
    """Build `name`, run one eval forward on a zero image, and return the summary as text."""
    info = model_info(name)
    model = create_model(name, **create_kwargs)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.zeros([1, 3, image_size, image_size]))
    lines = [f"{info.name}  (aliases: {', '.join(info.aliases) or '-'}; reference: {info.reference or '-'})",
             f"  parameters: {count_params(model) / 1e6:.2f}M", "  stages:"]
    for i, feat in enumerate(model.feature_info):
        lines.append(f"    {i}: {feat['name']:<12} channels {feat['channels']:<5} stride {feat['stride']}")
    outs = out if isinstance(out, list) else [out]
    lines.append(f"  output for a 1x3x{image_size}x{image_size} input: " +
                 ", ".join(str(list(t.shape)) for t in outs))
    return "\n".join(lines)
