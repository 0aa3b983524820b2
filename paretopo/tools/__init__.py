"""Tools the agent can call: python sandbox, search, calculator."""
