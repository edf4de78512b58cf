"""The activation functions model files name, as MLX functions: transformers' `hidden_act`
names (its ACT2FN) in config.json, and the torch classes sentence-transformers writes into a
Dense module's config ("torch.nn.modules.activation.Tanh"). Reading the names needs no MLX;
`mlx_function` imports it.
"""
from __future__ import annotations

# transformers' ACT2FN names -> ours. "gelu" is the exact (erf) GELU; "gelu_new",
# "gelu_pytorch_tanh" and "gelu_fast" the tanh approximation.
HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu",
               "tanh": "tanh", "sigmoid": "sigmoid", "linear": "identity"}
# The classes sentence-transformers' Dense saves (its default is Tanh), by class name.
TORCH_ACTS = {"Identity": "identity", "Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid",
              "GELU": "gelu", "SiLU": "silu", "Softsign": "softsign", "ELU": "elu",
              "LeakyReLU": "leaky_relu", "Mish": "mish", "Softplus": "softplus"}


def torch_activation(path: str) -> str | None:
    """Ours for a Dense's activation_function (a torch class's dotted path), or None."""
    return TORCH_ACTS.get(str(path).rsplit(".", 1)[-1])


def hidden_activation(name: str) -> str | None:
    return HIDDEN_ACTS.get(str(name).strip().lower())


def mlx_function(name: str):
    """The MLX function for one of our names (values of HIDDEN_ACTS / TORCH_ACTS)."""
    import mlx.core as mx
    import mlx.nn as nn

    return {"identity": lambda x: x, "tanh": mx.tanh, "relu": nn.relu, "sigmoid": mx.sigmoid,
            "gelu": nn.gelu, "gelu_tanh": nn.gelu_approx, "silu": nn.silu,
            "softsign": nn.softsign, "elu": nn.elu, "leaky_relu": nn.leaky_relu,
            "mish": nn.mish, "softplus": nn.softplus}[name]
