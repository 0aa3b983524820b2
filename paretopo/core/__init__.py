"""The method itself, pure and vectorised: Pareto ranks, hypervolume, scalarisation, advantages,
objectives and the method config. Imports nothing of paretopo outside this package."""
