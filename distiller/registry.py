"""Explicit registries that map a YAML ``class:`` name to the class that implements it.

Each schedule section has its own registry. Library classes register themselves with a decorator;
users register their own classes the same way, before loading a schedule::

    from distiller.registry import register_pruner

    @register_pruner
    class MyPruner(distiller.pruning.ParameterPruner):
        ...
"""
from .errors import ArgumentError, suggest


class Registry:
    """A name -> class mapping for one schedule section (``pruners``, ``quantizers``, ...)."""

    def __init__(self, section):
        self.section = section
        self._classes = {}

    def register(self, cls=None, *, name=None):
        """Registers ``cls`` under ``name`` (default: the class name). Usable as a decorator."""
        def add(klass):
            key = name or klass.__name__
            existing = self._classes.get(key)
            if existing is not None and existing is not klass:
                raise ArgumentError(f"{self.section}: class name '{key}' is already registered by "
                                    f"{existing.__module__}.{existing.__qualname__}")
            self._classes[key] = klass
            return klass
        return add(cls) if cls is not None else add

    def get(self, name):
        """Returns the class registered as ``name``; raises KeyError with close matches otherwise."""
        try:
            return self._classes[name]
        except KeyError:
            hint = suggest(name, self._classes)
            raise KeyError(f"unknown {self.section} class '{name}'"
                           + (f"; did you mean {hint}?" if hint else "")
                           + f" ({len(self._classes)} registered: see distiller.registry.list_classes"
                             f"('{self.section}'))") from None

    def __contains__(self, name):
        return name in self._classes

    def names(self):
        return sorted(self._classes)

    def items(self):
        return sorted(self._classes.items())


PRUNERS = Registry("pruners")
REGULARIZERS = Registry("regularizers")
QUANTIZERS = Registry("quantizers")
LR_SCHEDULERS = Registry("lr_schedulers")
EXTENSIONS = Registry("extensions")

#: The schedule sections, in the order their instances are built.
SECTIONS = {registry.section: registry
            for registry in (PRUNERS, REGULARIZERS, QUANTIZERS, LR_SCHEDULERS, EXTENSIONS)}

register_pruner = PRUNERS.register
register_regularizer = REGULARIZERS.register
register_quantizer = QUANTIZERS.register
register_lr_scheduler = LR_SCHEDULERS.register
register_extension = EXTENSIONS.register


def list_classes(section=None):
    """Lists registered class names, for one section or as a {section: names} dict for all."""
    if section is not None:
        return SECTIONS[section].names()
    return {name: registry.names() for name, registry in SECTIONS.items()}


#: kind -> fn(model, record, optimizer=None) that replays a structural change (thinning, quantization)
#: recorded in ``CompressionScheduler.model_transforms`` on a freshly built model.
MODEL_TRANSFORMS = {}


def register_model_transform(kind):
    """Registers the replay function for model-transform records of ``kind``. Usable as a decorator."""
    def add(fn):
        if MODEL_TRANSFORMS.get(kind, fn) is not fn:
            raise ArgumentError(f"a model transform replayer for '{kind}' is already registered")
        MODEL_TRANSFORMS[kind] = fn
        return fn
    return add
