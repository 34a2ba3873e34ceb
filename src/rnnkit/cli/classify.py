"""``rnnkit classify``: placeholder until the job lands."""


def add_classify_parser(sub) -> None:
    sub.add_parser("classify", help="(not yet available)")
