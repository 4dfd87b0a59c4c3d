"""Benchmarks run by `pikube bench ...`: they measure in the lab and print figures.

They never pass or fail on time; goals are judged by a person reading the figures (and by
comparing against a peer measured in the same run).
"""
