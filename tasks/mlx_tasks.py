"""(to be written)"""
from invoke import Collection

ns = Collection("mlx")
