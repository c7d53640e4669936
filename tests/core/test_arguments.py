"""The command line's words: core names settings, the CLI adds their flags."""

from __future__ import annotations

from core.arguments import parser, with_flags


def test_a_message_naming_settings_gets_their_flags():
    message = (
        "Out of memory on cpu with batch size 16: try batch size 8 (or a shorter max length, "
        "or a higher freeze depth)."
    )
    flags = "(command line: --batch-size, --max-length, --freeze)"
    assert with_flags(message) == f"{message} {flags}"
    assert with_flags("lower the learning rate (e.g. to 5e-05)").endswith("(command line: --lr)")
    assert with_flags("set the device to cpu or auto.").endswith("(command line: --device)")


def test_a_message_naming_no_setting_is_left_as_it_is():
    assert with_flags("No such file: data.csv.") == "No such file: data.csv."
    assert with_flags("No space left on device") == "No space left on device"


def test_the_parser_knows_every_command():
    args = parser().parse_args(["train", "data.csv", "--target", "y", "--batch-size", "8"])
    assert (args.command, args.batch_size, args.freeze) == ("train", 8, None)
