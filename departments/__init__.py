"""Simulated department systems (模拟委办局系统): one street's deliveries, dirty, with ground truth.

Stands in for the 12 external sources, so it imports nothing else of streethub.
``departments.simulate.simulate`` writes the deliveries; ``departments.server`` serves
the HTTP sources; ``departments.faults`` breaks deliveries on demand for tests.
"""
