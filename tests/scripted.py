"""A scripted fake policy shared by the rollout and evaluation tests."""

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast


class ScriptedPolicy(torch.nn.Module):
    """A fake causal LM that writes scripted assistant turns, whatever the forced tokens are.

    The script is picked by a marker in the prompt; turn k is the k-th text after an assistant
    header `<|im_start|>assistant\\n`, followed by `<|im_end|>`. The next token is a function of
    the whole token history, which the fake reads back from a real `DynamicCache` in which it
    stores token ids as keys: it only works if the loop keeps the cache, masks and padding right.
    """

    def __init__(self, tokenizer, scripts: dict[str, list[str]]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device
        self.tokenizer = tokenizer
        self.header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self.turn_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.scripts = {
            marker: [tokenizer.encode(turn, add_special_tokens=False) for turn in turns]
            for marker, turns in scripts.items()
        }

    def forward(self, input_ids, attention_mask, past_key_values=None, **kwargs):
        cache = past_key_values if past_key_values is not None else DynamicCache()
        ids_as_keys = input_ids.float()[:, None, :, None]  # [N, heads=1, L, head_dim=1]
        history, _ = cache.update(ids_as_keys, ids_as_keys, layer_idx=0)
        logits = torch.full(
            (input_ids.shape[0], 1, max(self.tokenizer.get_vocab().values()) + 1), -1e4
        )
        for row in range(input_ids.shape[0]):
            ids = history[row, 0, :, 0].long()[attention_mask[row].bool()].tolist()
            logits[row, 0, self._next_token(ids)] = 0.0
        return CausalLMOutputWithPast(logits=logits, past_key_values=cache)

    def _next_token(self, ids: list[int]) -> int:
        text = self.tokenizer.decode(ids)
        turns = next(turns for marker, turns in self.scripts.items() if marker in text)
        width = len(self.header)
        header_ends = [
            i + width for i in range(len(ids) - width + 1) if ids[i : i + width] == self.header
        ]
        turn, position = len(header_ends) - 1, len(ids) - header_ends[-1]
        if turn < len(turns) and position < len(turns[turn]):
            return turns[turn][position]
        return self.turn_end
