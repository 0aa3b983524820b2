"""Training: the policy, tool-using rollouts, the TRL trainer hook and one training run end to end."""
