"""GPU memory of an engine (docs/engine.md, "Memory modes").

  plan.py   what each memory mode needs, from the real configs on the meta device; the
            startup check that refuses a mode that cannot fit
  trace.py  peak activation memory of a forward, traced on the meta device
"""
