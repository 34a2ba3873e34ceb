"""``rnnkit forecast``: placeholder until the job lands."""


def add_forecast_parser(sub) -> None:
    sub.add_parser("forecast", help="(not yet available)")
