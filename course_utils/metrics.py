"""Quality figures a notebook reports, readable by people and by the benchmark command."""

from __future__ import annotations

#: MIME type of the machine-readable copy of a metric in a notebook's outputs.
METRIC_MIMETYPE = "application/vnd.course-utils.metric+json"


def report_metric(name: str, value: float, unit: str = "") -> None:
    """Show a quality figure, e.g. ``report_metric("held-out accuracy", 0.97, "%")``.

    A person sees one line of text. ``python -m course_utils benchmark`` reads the same
    figure back from the executed notebook (a second, machine-readable representation of
    the output), so the notebook behaves the same whether or not it is being measured.
    Fractions reported with unit ``"%"`` are shown as percentages.
    """
    value = float(value)
    shown = f"{100 * value:.1f} %" if unit == "%" else f"{value:.4g}{' ' + unit if unit else ''}"
    text = f"{name}: {shown}"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: print only
        print(text)
        return
    if get_ipython() is None:
        print(text)
        return
    bundle = {"text/plain": text, METRIC_MIMETYPE: {"name": name, "value": value, "unit": unit}}
    display(bundle, raw=True)
