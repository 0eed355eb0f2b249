"""A host library's source checkout (PaddleDetection, PaddleOCR) for the runners of its own tools
(tools/ppdet_run.py, tools/ppocr_run.py): the checkout given with a --<host>-root flag, found above the
tool's own path, or named by an environment variable; and the runners' shared argument parsing.
A leaf module: imports nothing of the package (each runner passes its own error type)."""
import os

__all__ = ["HostCheckout"]


class HostCheckout:
    """The checkout rules of one host library.

    Args:
        name: the host's name in messages ("PaddleDetection").
        markers: files (relative paths) every checkout holds.
        flag: the runner's option naming a checkout ("--ppdet-root").
        env_var: the environment variable naming a checkout ("PADDLEDET_HOME").
        error: the exception type raised (a UserError subclass of the runner's package).
        usage: the runner's usage line, appended to argument errors.
        hint: appended to "is not a checkout" errors (what the missing files are).
    """

    def __init__(self, name, markers, flag, env_var, error, usage, hint=""):
        self.name, self.markers, self.flag, self.env_var = name, tuple(markers), flag, env_var
        self.error, self.usage, self.hint = error, usage, hint

    def is_checkout(self, path):
        return all(os.path.isfile(os.path.join(path, m)) for m in self.markers)

    def checked(self, path, source):
        """`path` (given as `source`: the flag or the environment variable) made absolute; an error naming
        it and the missing files when it is not a checkout."""
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            raise self.error(f"{source}={path}: no such directory (expected a {self.name} checkout holding "
                             f"{' and '.join(self.markers)})")
        missing = [m for m in self.markers if not os.path.isfile(os.path.join(path, m))]
        if missing:
            raise self.error(f"{source}={path} is not a {self.name} checkout: {', '.join(missing)} not found"
                             + self.hint)
        return path

    def above(self, tool):
        """The nearest folder holding the tool (or above it) that is a checkout, or None."""
        folder = os.path.dirname(os.path.abspath(tool))
        while not self.is_checkout(folder):
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent
        return folder

    def find(self, tool=None, explicit=None, environ=None):
        """(checkout or None, what was looked for): from `explicit` (the flag's value; wins), the folders
        above `tool`, then the environment variable of `environ` (default os.environ)."""
        environ = os.environ if environ is None else environ
        if explicit:
            return self.checked(explicit, self.flag), []
        looked = []
        if tool:
            found = self.above(tool)
            if found:
                return found, []
            looked.append(f"{self.markers[0]} in the folders above {os.path.abspath(tool)}")
        if environ.get(self.env_var):
            return self.checked(environ[self.env_var], self.env_var), []
        looked.append(f"{self.env_var} (unset)")
        return None, looked

    def not_found(self, looked):
        """The error when no checkout was found, listing what was looked for."""
        return self.error(f"{self.name} not found; looked for " + "; ".join(looked)
                          + f". Pass {self.flag} DIR or set {self.env_var} to a {self.name} checkout")

    def parse_args(self, argv):
        """(checkout given with the flag or None, tool path, tool args) from a runner's argv (without the
        program name)."""
        argv = list(argv)
        root = None
        while argv and argv[0].startswith(self.flag):
            opt = argv.pop(0)
            if "=" in opt:
                root = opt.split("=", 1)[1]
            elif argv:
                root = argv.pop(0)
            else:
                raise self.error(f"{self.flag} needs a directory\n{self.usage}")
        if not argv or argv[0] in ("-h", "--help"):
            raise self.error(self.usage)
        tool = argv.pop(0)
        if not os.path.isfile(tool):
            raise self.error(f"tool script not found: {tool} (expected e.g. <{self.name}>/tools/train.py)"
                             f"\n{self.usage}")
        return root, os.path.abspath(tool), argv
