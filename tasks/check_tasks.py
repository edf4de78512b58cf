"""(to be written)"""
TASKS = []
