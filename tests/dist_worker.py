"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2` (gloo, CPU).

Each rank trains two ParetoPO steps on the toy task and writes, per step, the gathered
objective matrix, the advantages of all N rows and its own slice to rank<k>.json.
"""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import ToyTask  # noqa: E402

from paretopo.agent.models import load_policy  # noqa: E402
from paretopo.core.config import ParetoPOConfig  # noqa: E402
from paretopo.training.trainer import (  # noqa: E402
    make_reward_functions,
    make_rollout_func,
    paretopo_trainer_class,
)


def main(out_dir: str, policy: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl import GRPOConfig

    task = ToyTask()
    records = []

    class Recording(paretopo_trainer_class()):
        def _calculate_rewards(self, *args):
            gathered = super()._calculate_rewards(*args)
            self._recorded = {"objectives": self._batch["objectives"].tolist(), "ids": self._batch["ids"]}
            return gathered

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            records.append({**self._recorded, "all": self.last_advantages.tolist(),
                            "local": output["advantages"].cpu().tolist(), "stage": self.current_stage()})
            return output

    model, tokenizer = load_policy(policy)
    examples = task.load("train")[:32]
    dataset = Dataset.from_list([{"prompt": task.messages(e), "id": e.id, "answer": e.answer} for e in examples])
    args = GRPOConfig(output_dir=out_dir, use_cpu=True, bf16=False, report_to="none", max_steps=2,
                      per_device_train_batch_size=4, num_generations=4, max_completion_length=16,
                      learning_rate=5e-2, logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True,
                      gradient_checkpointing=False)
    trainer = Recording(
        model=model, processing_class=tokenizer, reward_funcs=make_reward_functions(task), args=args,
        train_dataset=dataset, rollout_func=make_rollout_func({}, max_tool_calls=0, tools_in_prompt=False),
        method=ParetoPOConfig(stage1_steps=1, stage1_outcome="train_batch"),
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"rank": rank, "world": trainer.accelerator.num_processes,
                                                              "records": records}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
