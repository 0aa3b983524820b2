import json

import pytest
from trainer_fixtures import fast_settings, tiny_random_policy

from paretopo.evaluation.export import export_adapter, verify_adapter
from paretopo.training.train import train_run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    policy = tiny_random_policy(root / "policy")
    train_run("paretopo", fast_settings(root / "run", policy, max_steps=3, checkpoint_eval=False),
              method_overrides={"stage1_steps": 1})
    return root


def test_export_verifies_reloads_and_merges(trained_run):
    report = export_adapter(trained_run / "run", trained_run / "exported", merged=True)
    assert report.verify.ok and report.verify.reloaded and report.verify.nonzero_lora_b > 0
    assert report.verify.changed_outputs >= 1
    meta = json.loads((trained_run / "exported" / "paretopo.json").read_text())
    assert meta["method"] == "paretopo" and meta["weights"] == [0.6, 0.4]
    assert meta["frontier_point"]["split"] == "test" and "versions" in meta
    assert (trained_run / "exported" / "chat_template.jinja").exists()
    assert not any(p.name.startswith(("optimizer", "rng_state")) for p in (trained_run / "exported").iterdir())
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(report.merged_path)  # loads without PEFT
    assert merged.dtype.is_floating_point


def test_untrained_adapter_is_refused_and_leaves_nothing(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = tiny_random_policy(tmp_path / "policy")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(policy),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(policy).save_pretrained(tmp_path / "adapter")
    report = verify_adapter(tmp_path / "adapter")
    assert not report.ok and any("never trained" in p for p in report.problems)
    with pytest.raises(ValueError, match="verification failed"):
        export_adapter(tmp_path / "adapter", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


def test_verify_feeds_the_prompts_on_the_device_load_adapter_moved_the_model_to(tmp_path, monkeypatch):
    """On a GPU, load_adapter moves the model to CUDA: the prompts must follow it (faked here with a
    model whose parameters sit on the meta device and whose generate records its inputs' device)."""
    from contextlib import contextmanager

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import paretopo.evaluation.export as export

    policy = tiny_random_policy(tmp_path / "policy")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(policy),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.save_pretrained(tmp_path / "adapter")

    class MovedModel:
        seen: list[torch.device] = []
        adapter_on = True

        def parameters(self):
            yield torch.empty(1, device="meta")

        def generate(self, input_ids, **kwargs):
            self.seen.append(input_ids.device)
            return torch.tensor([[1 if self.adapter_on else 2]])

        @contextmanager
        def disable_adapter(self):
            self.adapter_on = False
            yield
            self.adapter_on = True

    moved = MovedModel()
    monkeypatch.setattr(export, "load_adapter", lambda folder, base: (moved, tokenizer))
    report = verify_adapter(tmp_path / "adapter", n_prompts=2)
    assert report.reloaded and report.prompts_checked == 2 and report.changed_outputs == 2, report.problems
    assert moved.seen and all(device.type == "meta" for device in moved.seen)
