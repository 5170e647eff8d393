"""Looking at a task graph without running anything: `status`, `graph` and `list`.

    states.py    the whole graph with each task's state and reasons (status, graph)
    render.py    that graph as a text tree, JSON, Graphviz dot or Mermaid
    catalog.py   every task family with its parameters (list)
"""
