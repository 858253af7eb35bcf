"""Distillation from a YAML schedule (``distillers:`` with the teacher as arch + checkpoint, scheduled by a
``distiller:`` policy) and from Distiller's ``--kd-*`` flags; bad teachers are refused naming both sides."""
import argparse
import os

import pytest
import torch

import distiller
from distiller import registry
from distiller.apputils import save_checkpoint
from distiller.errors import ArgumentError, CheckpointError, InputFileError, ScheduleError
from distiller.knowledge_distillation import KnowledgeDistillation, add_distillation_args, policy_from_args
from distiller.models import create_model
from distiller.testing import TinyCNN, train_with_scheduler


def schedule_of(instance, epochs=(1, 3)):
    return {"version": 1, "distillers": {"kd": instance}, "policies": [
        {"distiller": {"instance_name": "kd"}, "starting_epoch": epochs[0], "ending_epoch": epochs[1]}]}


def example(class_name="KnowledgeDistillation"):
    return {"class": class_name, **registry.DISTILLERS.example(class_name)}


@pytest.mark.parametrize("class_name", registry.list_classes("distillers"))
def test_registered_distiller_builds_from_its_example_trains_and_resumes(class_name, teacher_checkpoint, images):
    schedule = schedule_of(example(class_name))
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    teacher_calls = []
    policy = scheduler.policies[1][0]
    policy.teacher.register_forward_hook(lambda *args: teacher_calls.append(1))
    train_with_scheduler(model, optimizer, scheduler, images, epochs=3)
    assert len(teacher_calls) == 2 * len(images), "the teacher must run in the scheduled epochs 1 and 2 only"
    assert not model._forward_hooks
    fresh = TinyCNN()
    resumed = distiller.config.dict_config(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1), schedule)
    resumed.load_state_dict(scheduler.state_dict())
    for name, tensor in scheduler.state_dict()["policies"]["kd"]["state"].get("adapters", {}).items():
        assert torch.equal(resumed.state_dict()["policies"]["kd"]["state"]["adapters"][name], tensor)


def test_distillers_are_built_before_lr_schedulers_so_they_see_the_adapter_group(teacher_checkpoint, images):
    schedule = schedule_of(example(), epochs=(0, 2))
    schedule["lr_schedulers"] = {"cyclic": {"class": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 1}}
    schedule["policies"].append({"lr_scheduler": {"instance_name": "cyclic"}, "starting_epoch": 0, "ending_epoch": 2})
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = distiller.config.dict_config(model, optimizer, schedule)
    train_with_scheduler(model, optimizer, scheduler, images, epochs=1)
    assert len(optimizer.param_groups) == 2  # built after the distiller, CyclicLR cycles the adapters' rate as well
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1, 0.1])


def test_a_teacher_checkpoint_of_another_arch_is_refused_naming_both(teacher_checkpoint):
    os.replace(save_checkpoint(0, "simplenet_cifar", create_model(False, "digits", "simplenet_cifar", device_ids=-1),
                               name="simplenet", dir="."), "simplenet.pth.tar")
    instance = example()
    instance["teacher"] = dict(instance["teacher"], checkpoint="simplenet.pth.tar")
    with pytest.raises(ScheduleError, match=r"distillers\.kd.*'simplenet\.pth\.tar' holds a 'simplenet_cifar' model, "
                                            r"but the teacher architecture is 'resnet20_cifar'"):
        distiller.config.dict_config(TinyCNN(), None, schedule_of(instance))


def test_a_checkpoint_without_arch_that_does_not_fit_is_refused(teacher_checkpoint):
    save_checkpoint(0, None, TinyCNN(), dir=".")
    spec = distiller.knowledge_distillation.TeacherSpec("resnet20_cifar", "digits", "checkpoint.pth.tar")
    with pytest.raises(CheckpointError, match="does not fit the teacher architecture 'resnet20_cifar'"):
        distiller.distillation.build_teacher(spec, torch.device("cpu"))
    with pytest.raises(InputFileError, match="the teacher checkpoint 'missing.pth.tar' does not exist"):
        distiller.distillation.build_teacher(spec._replace(checkpoint="missing.pth.tar"), torch.device("cpu"))


@pytest.mark.parametrize("teacher, match", [
    ({"arch": "resnet20_cifar", "dataset": "digits"}, "needs trained weights from exactly one source"),
    ({"arch": "resnet20_cifar", "dataset": "digits", "checkpoint": "teacher.pth.tar", "pretrained": True}, "not both"),
    ({"arch": "resnet21_cifar", "dataset": "digits", "checkpoint": "teacher.pth.tar"},
     "unknown architecture 'resnet21_cifar'; did you mean"),
    ({"arch": "resnet20_cifar", "checkpoint": "teacher.pth.tar"}, r"'teacher\['dataset'\]'.*field required"),
])
def test_bad_teachers_are_schedule_errors_at_the_teacher(teacher_checkpoint, teacher, match):
    instance = dict(example(), teacher=teacher)
    with pytest.raises(ScheduleError, match=r"at 'distillers\.kd\.teacher.*" + match):
        distiller.config.dict_config(TinyCNN(), torch.optim.SGD(TinyCNN().parameters(), lr=0.1), schedule_of(instance))


def test_output_shape_mismatch_and_unknown_hint_modules_are_found_before_training(teacher_checkpoint):
    model = TinyCNN(num_classes=5)
    with pytest.raises(ScheduleError, match=r"teacher 'resnet20_cifar' outputs shape \(1, 10\) but the student "
                                            r"\(TinyCNN\) \(1, 5\)"):
        distiller.config.dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule_of(example()))
    instance = dict(example(), hints=[{"student": "relu1", "teacher": "layer_1"}])
    with pytest.raises(ScheduleError, match=r"at 'distillers\.kd\.hints\[0\]\.teacher'.*no module 'layer_1'; did you "
                                            r"mean 'layer1'"):
        distiller.config.dict_config(TinyCNN(), torch.optim.SGD(TinyCNN().parameters(), lr=0.1),
                                     schedule_of(instance))


def parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="simplenet_cifar")
    parser.add_argument("--epochs", type=int, default=4)
    add_distillation_args(parser, arch_choices=distiller.models.list_models("digits"), enable_pretrained=True)
    return parser


def test_the_flags_have_distillers_names_aliases_and_defaults():
    defaults = parser().parse_args([])
    assert (defaults.kd_teacher, defaults.kd_pretrained, defaults.kd_resume, defaults.kd_temp, defaults.kd_distill_wt,
            defaults.kd_student_wt, defaults.kd_teacher_wt, defaults.kd_start_epoch) == \
        (None, False, None, 1.0, 0.5, 0.5, 0.0, 0)
    args = parser().parse_args(["--kd-teacher", "resnet20_cifar", "--kd-resume", "t.pth.tar", "--kd-temp", "4",
                                "--kd-dw", "0.7", "--kd-sw", "0.3", "--kd-tw", "0", "--kd-start-epoch", "1",
                                "--kd-pretrained"])
    assert (args.kd_teacher, args.kd_resume, args.kd_temp, args.kd_distill_wt, args.kd_student_wt,
            args.kd_start_epoch, args.kd_pretrained) == ("resnet20_cifar", "t.pth.tar", 4.0, 0.7, 0.3, 1, True)
    assert parser().parse_args(["--kd-temperature", "2", "--kd-distill-wt", "0.1"]).kd_temp == 2.0
    with pytest.raises(SystemExit):
        parser().parse_args(["--kd-teacher", "resnet18"])  # not an architecture for the dataset
    without_pretrained = argparse.ArgumentParser()
    add_distillation_args(without_pretrained)
    help_text = without_pretrained.format_help()
    assert "--kd-pretrained" not in help_text and "--kd-teacher" in help_text


def test_policy_from_args_builds_the_policy_and_its_epochs(teacher_checkpoint):
    args = parser().parse_args(["--kd-teacher", "resnet20_cifar", "--kd-resume", teacher_checkpoint,
                                "--kd-temp", "3", "--kd-dw", "0.6", "--kd-sw", "0.4", "--kd-start-epoch", "1"])
    policy, schedule = policy_from_args(TinyCNN(), args, "digits")
    assert isinstance(policy, KnowledgeDistillation) and policy.name == "knowledge_distillation"
    assert (policy.temperature, tuple(policy.loss_wts)) == (3.0, (0.6, 0.4, 0.0))
    assert schedule.epoch_list() == [1, 2, 3]
    assert policy_from_args(TinyCNN(), parser().parse_args([]), "digits") is None


@pytest.mark.parametrize("flags, match", [
    (["--kd-resume", "teacher.pth.tar"], "add --kd-teacher ARCH"),
    (["--kd-teacher", "resnet20_cifar", "--kd-resume", "teacher.pth.tar", "--kd-start-epoch", "4"],
     "--kd-start-epoch 4 is not before --epochs 4"),
    (["--kd-teacher", "resnet20_cifar"], r"--kd-resume PATH\) or teacher.pretrained: true \(--kd-pretrained\)"),
    (["--kd-teacher", "resnet20_cifar", "--kd-resume", "teacher.pth.tar", "--kd-tw", "0.5"], "set it to 0"),
])
def test_bad_flags_are_argument_errors(teacher_checkpoint, flags, match):
    with pytest.raises(ArgumentError, match=match):
        policy_from_args(TinyCNN(), parser().parse_args(flags), "digits")
