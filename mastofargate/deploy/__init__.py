"""The side-effecting layer: plan, bootstrap, roll out and watch a deployment on AWS."""
