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
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


# Issue 24: an export never removes what it did not write; its metadata holds no absolute path.


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_export_refuses_the_source_the_folders_around_it_and_any_other_folder(trained_run, tmp_path):
    run = trained_run / "run"
    before = _listing(trained_run)
    for out in (trained_run, run, run / "..", run / "final", run / "final" / "sub", run / "checkpoints"):
        with pytest.raises(ValueError, match="source|not empty"):
            export_adapter(run / "final", out, verify=False)
    assert _listing(trained_run) == before  # the run (and everything beside it) is whole

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        export_adapter(run, mine, verify=False)
    with pytest.raises(ValueError, match="is not an earlier paretopo export"):
        export_adapter(run, mine, verify=False, overwrite=True)
    assert _listing(mine) == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_only_an_earlier_export_holding_nothing_else(trained_run, tmp_path):
    from paretopo.evaluation.export import EXPORT_MARKER

    run, out = trained_run / "run", tmp_path / "exported"
    (tmp_path / ".exported.partial").mkdir()  # a user's folder with the name earlier exports staged in
    (tmp_path / ".exported.partial" / "keep").write_text("mine")
    export_adapter(run, out, verify=False)
    assert (out / EXPORT_MARKER).exists() and (out / "adapter_model.safetensors").exists()
    (out / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match="holds notes.md, which the earlier export did not write"):
        export_adapter(run, out, verify=False, overwrite=True)
    (out / "notes.md").unlink()
    export_adapter(run, out, verify=False, overwrite=True)
    assert (out / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exported.partial", "exported"]  # no staging left
    assert (tmp_path / ".exported.partial" / "keep").read_text() == "mine"


def test_export_metadata_holds_no_absolute_path_and_files_follow_the_umask(trained_run, tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        export_adapter(trained_run / "run", tmp_path / "out", verify=False)
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    meta = json.loads((out / "paretopo.json").read_text())

    def strings(value):
        if isinstance(value, dict):
            return [s for item in value.values() for s in strings(item)]
        if isinstance(value, list):
            return [s for item in value for s in strings(item)]
        return [value] if isinstance(value, str) else []

    assert not [s for s in strings(meta) if os.path.isabs(s)]
    assert (out / meta["source"]).resolve() == (trained_run / "run" / "final").resolve()
    assert (out / meta["base_model"]).resolve().is_dir()  # the tiny local base, relative to the export
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {p.name: oct(0o644) for p in out.iterdir()}
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)


def test_a_damaged_adapter_is_named_in_one_line(trained_run, tmp_path):
    import shutil

    source = tmp_path / "adapter"
    shutil.copytree(trained_run / "run" / "final", source)
    data = (source / "adapter_model.safetensors").read_bytes()
    (source / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])  # cut short
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is damaged \(Error while deserializing"):
        export_adapter(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


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
