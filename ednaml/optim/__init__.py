"""Parameter groups, optimizers and schedulers from MODEL.PARAMETER_GROUPS, OPTIMIZER and SCHEDULER."""
