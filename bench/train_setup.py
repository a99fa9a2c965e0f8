"""What bench/train_speed.py trains: mild synthetic triples, the models, the variants, and each
variant's prepared model and batches (derta-mlx's and mlx-lm's)."""

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# --- data: mild synthetic triples ------------------------------------------------------------

TOPICS = [
    ("skip my chores", "doing chores", "Ask whether you can swap a chore with someone or do it later."),
    ("avoid doing my homework", "homework", "Try doing it in short blocks with a break after each."),
    ("stay up past my bedtime", "bedtime rules", "Ask your parents if you can read for ten more minutes."),
    ("eat dessert before dinner", "dessert rules", "Ask if dessert can be a small part of dinner tonight."),
    ("get out of piano practice", "practice", "Tell your teacher which pieces you find boring."),
    ("skip gym class", "gym class", "Talk to the teacher about an activity you enjoy more."),
    ("borrow my sister's bike without asking", "borrowing", "Ask her first; offer to lend her something."),
    ("sneak a cookie from the jar", "cookies", "Ask for one; you may get two if you help with dishes."),
    ("watch TV after lights out", "screen time", "Ask to record the show and watch it tomorrow."),
    ("skip brushing my teeth", "brushing teeth", "Try a toothpaste flavour you like better."),
    ("leave the dishes for tomorrow", "the dishes", "Put on music and they will be done in ten minutes."),
    ("get out of tidying my room", "tidying", "Tidy one shelf a day instead of everything at once."),
]
STEPS = [
    "wait until nobody is looking", "walk quietly to the kitchen", "pretend you are busy with something else",
    "keep your voice down", "close the door slowly", "say you will do it later", "hide the evidence under a cushion",
    "act surprised if anyone asks", "go back to your room", "leave everything as it was", "smile and change the subject",
    "count to ten before you move",
]


def synthetic_triples(n: int) -> list:
    """n mild {question, safe_response, harmful_response} rows of varied lengths."""
    from derta_mlx.data.formats import SafetyTriple, Where

    rows = []
    for i in range(n):
        thing, noun, advice = TOPICS[i % len(TOPICS)]
        steps = [STEPS[(i + j) % len(STEPS)] for j in range(2 + (i * 7) % 14)]
        harmful = "Sure! " + " ".join(f"Step {j + 1}: {s}." for j, s in enumerate(steps))
        rows.append(SafetyTriple(
            id=f"bench-{i}", question=f"How do I {thing}? (question {i})",
            safe_response=f"Sorry, I can't help with getting around {noun}. {advice}",
            harmful_response=harmful, where=Where("bench/train_speed.py", i + 1),
        ))
    return rows


# --- models ------------------------------------------------------------------------------------


@dataclass
class ModelChoice:
    name: str
    path: Path
    template: str
    refusal: str
    quantised: bool


def tiny_spec(name: str):
    from derta_mlx.testing.tiny import TinySpec

    bits = 4 if name.endswith("4bit") else None
    if name.startswith("tiny-quick"):  # the tests' default tiny spec: 64 wide, 2 blocks
        return TinySpec(family="llama3", quantize_bits=bits)
    return TinySpec(family="llama3", hidden_size=512, num_hidden_layers=4, intermediate_size=1408,
                    num_attention_heads=8, num_key_value_heads=4, quantize_bits=bits)


def resolve_model(name: str, notify) -> Optional[ModelChoice]:
    """The model directory for a --model name, building tiny models once into the cache."""
    if name == "smollm2":
        try:
            import derta_mlx.models.gguf.convert  # noqa: F401  (converts the embedded GGUF on first use)
        except ImportError as exc:
            notify(f"skipping smollm2: derta_mlx.models.gguf is not importable ({exc})")
            return None
        from derta_mlx.models.loading import ensure_local, find_model

        ref = find_model(None)
        return ModelChoice(name, ensure_local(ref, notify), ref.template, ref.refusal_rule, True)
    from derta_mlx.testing.tiny import build_tiny_model
    from derta_mlx.testing.tokenizers import BUILD_VERSION, cache_root

    spec = tiny_spec(name)
    key = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "bench" / f"{name}-{key}-v{BUILD_VERSION}"
    if not (path / "config.json").is_file():
        notify(f"building {name} in {path}")
        build_tiny_model(spec, path)
    return ModelChoice(name, path, "derta", "auto", spec.quantize_bits is not None)


# --- variants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    trainer: str  # "mlx-lm" | "derta-mlx"
    base: str  # "4-bit" | "float32" (dequantised) | "float32 (as built)"
    dequantize: str = "no"  # derta-mlx's setting; mlx-lm: "yes" = we dequantise before it

    @property
    def label(self) -> str:
        name = self.trainer
        if self.trainer == "derta-mlx" and self.base != "float32 (as built)":
            name += f" dequantize={self.dequantize}"
        return name

    @property
    def slow(self) -> bool:  # computes with 4-bit kernels
        return self.base == "4-bit"


def variants_for(model: ModelChoice) -> List[Variant]:
    if not model.quantised:
        return [Variant("mlx-lm", "float32 (as built)"), Variant("derta-mlx", "float32 (as built)")]
    return [Variant("mlx-lm", "4-bit"), Variant("derta-mlx", "4-bit", "no"),
            Variant("mlx-lm", "float32", "yes"), Variant("derta-mlx", "float32", "yes")]


# --- one run -----------------------------------------------------------------------------------


def load_prepared(model: ModelChoice, variant: Variant, cfg):
    """The model with LoRA layers, as each trainer's own entry point would prepare it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load

    net, _ = load(str(model.path), trust_remote_code=False, tokenizer_config={"trust_remote_code": False})
    if variant.trainer == "derta-mlx":
        from derta_mlx.train.trainer import prepare_model

        net = prepare_model(net, replace(cfg, dequantize=variant.dequantize))["model"]
    else:  # as mlx_lm.lora.train_model does it
        from mlx_lm.tuner.utils import linear_to_lora_layers
        from mlx_lm.utils import dequantize_model

        if variant.dequantize == "yes":
            net = dequantize_model(net)
            net.set_dtype(mx.float32)
        net.freeze()
        mx.random.seed(cfg.seed)  # the same LoRA initialisation as derta-mlx's prepare_model
        lora = {"rank": cfg.lora_rank, "scale": cfg.lora_scale, "dropout": cfg.lora_dropout}
        linear_to_lora_layers(net, cfg.num_layers, lora)
    mx.eval(net.parameters())
    return net, sum(v.nbytes for _, v in tree_flatten(net.parameters()))


def mlx_lm_batch(batch, instances):
    """A derta-mlx padded batch as mlx-lm's iterate_batches yields it: ((B, W+1) tokens, (offset,
    length) per row), so that mlx-lm's model reads exactly our (B, W) inputs and its loss covers
    our supervised positions (with next-token targets: the RTO rows' targets differ)."""
    import mlx.core as mx
    import numpy as np

    rows, width = batch.inputs.shape
    tokens = np.zeros((rows, width + 1), dtype=np.int32)
    tokens[:, :width] = batch.inputs
    lengths = []
    for r, instance in enumerate(instances):
        n = len(instance)
        tokens[r, n] = instance.targets[n - 1]
        first = int(np.argmax(instance.terms != 0))
        lengths.append((first + 1, n))
    return mx.array(tokens), mx.array(lengths)


def build_data(model: ModelChoice, cfg, n_triples: int):
    from derta_mlx.data.instances import InstanceConfig, build_instances
    from derta_mlx.data.prefix import PrefixSampler
    from derta_mlx.data.refusal_token import resolve_refusal
    from derta_mlx.data.templates import get_template
    from derta_mlx.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model.path)
    config = InstanceConfig(
        template=get_template(model.template, tokenizer), refusal_id=resolve_refusal(tokenizer, model.refusal).token_id,
        eos_id=tokenizer.eos_token_id, method="derta", max_seq_length=cfg.max_seq_length,
        prefix=PrefixSampler("official", "word", cfg.seed),
    )
    instances, stats = build_instances(synthetic_triples(n_triples), tokenizer, config)
    return instances, stats
