"""The policy as an agent: loading it (``models``), tool-using generation (``rollout``) and the
registry of rollout backends. Used by training, evaluation and the apps; imports none of them."""
