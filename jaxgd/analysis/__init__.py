"""Reading results: statistics over a population's members and the figures of runs and studies."""
