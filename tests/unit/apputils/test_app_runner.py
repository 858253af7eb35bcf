"""run_cli: the exit status and message of a sample application for user errors, bugs and interrupts."""
import argparse

import pytest

from distiller.apputils.app_runner import run_cli
from distiller.errors import ScheduleError


def _parser(with_resume):
    parser = argparse.ArgumentParser(prog="app")
    parser.add_argument("--verbose", action="store_true")
    if with_resume:
        parser.add_argument("--resume-from")
    return parser


def _raising(error):
    def main(args):
        raise error
    return main


def test_a_user_error_is_one_line_and_status_2(capsys):
    assert run_cli(_raising(ScheduleError("bad.yaml: no policies")), _parser(False), []) == 2
    assert capsys.readouterr().err == "app: error: bad.yaml: no policies\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        run_cli(_raising(KeyError("bug")), _parser(False), [])


@pytest.mark.parametrize("with_resume", [True, False])
def test_an_interrupt_suggests_resuming_only_where_the_app_can_resume(capsys, with_resume):
    assert run_cli(_raising(KeyboardInterrupt()), _parser(with_resume), []) == 130
    err = capsys.readouterr().err
    assert err.startswith("app: interrupted")
    assert ("--resume-from" in err) == with_resume
