"""Placeholder: filled in by the issue-7 work (see its module docstring once written)."""

from fastapi import APIRouter

router = APIRouter()
