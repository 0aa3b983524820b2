import json

import pytest

from paretopo.core.advantages import ADVANTAGES
from paretopo.core.config import PRESETS, ParetoPOConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_round_trips(name):
    config = ParetoPOConfig.from_preset(name)
    assert config.method == name
    assert ParetoPOConfig.from_dict(json.loads(config.to_json())) == config
    for stage in (1, 2):
        estimator = config.estimator_for_stage(stage)
        ADVANTAGES[estimator]([[1.0, 0.5], [0.0, 1.0]], 2, **config.estimator_options(stage, meta_reward=1.3))


def test_presets_cover_every_method_and_ablation():
    expected = {"paretopo", "torl_grpo", "fixed_weight", "otc_grpo", "mo_grpo", "gdpo",
                "no_stage1", "no_stage2", "no_dynamic_weighting", "no_pareto_ranking"}
    assert expected <= set(PRESETS)
    assert ParetoPOConfig.from_preset("otc_grpo").tool_efficiency_form == "otc"
    assert ParetoPOConfig.from_preset("no_stage1").stage_at(0) == 2
    assert ParetoPOConfig.from_preset("no_stage2").stage_at(10_000) == 1
    assert ParetoPOConfig.from_preset("no_dynamic_weighting").estimator_options(1, meta_reward=1.9)["meta_reward"] == 1.0
    assert ParetoPOConfig.from_preset("no_pareto_ranking").estimator_for_stage(2) == "fixed_weight"


def test_stage_schedule():
    config = ParetoPOConfig(stage1_steps=3)
    assert [config.stage_at(s) for s in range(5)] == [1, 1, 1, 2, 2]
    epoch = ParetoPOConfig()
    assert epoch.stage_at(9, steps_per_epoch=10) == 1 and epoch.stage_at(10, steps_per_epoch=10) == 2
    with pytest.raises(ValueError, match="steps_per_epoch"):
        epoch.stage_at(0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"beta": 1.5}, "beta must be in"),
        ({"gamma": 1.0}, "gamma must be in"),
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"weights": (1.0,)}, "one weight per objective"),
        ({"weights": (0.0, 0.0)}, "at least one > 0"),
        ({"stage2_center": "median"}, "stage2_center='median' is not one of"),
        ({"stage1_estimator": "ppo"}, "unknown; choose one of"),
        ({"stage1_steps": -1}, "stage1_steps"),
        ({"stage1_steps": 0, "stage2_estimator": None}, "no stage"),
        ({"tool_efficiency_form": "otc", "max_tool_calls": 0}, "OTC"),
    ],
)
def test_bad_values_say_what_to_change(overrides, message):
    with pytest.raises(ValueError, match=message):
        ParetoPOConfig(**overrides)


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="unknown method preset"):
        ParetoPOConfig.from_preset("grpo++")
    with pytest.raises(ValueError, match="unknown ParetoPOConfig fields"):
        ParetoPOConfig.from_dict({"betta": 0.5})


def test_every_field_has_help():
    assert all(text for text in ParetoPOConfig.help().values())
