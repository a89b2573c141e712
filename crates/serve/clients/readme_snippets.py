"""Runs the Python and TypeScript snippets of the README's "Serving the Conversations API"
section against a running `persist serve` (OPENAI_BASE_URL, OPENAI_API_KEY), so the README
shows what works.

    python readme_snippets.py README.md PYTHON NODE

PYTHON runs the Python blocks; NODE runs the `ts` blocks (plain JavaScript as written) as
modules inside clients/node, where `openai` and `@openai/agents` are installed.
"""

import pathlib
import re
import subprocess
import sys

readme, python, node = sys.argv[1:4]
text = pathlib.Path(readme).read_text()
section = text.split("\n## Serving the Conversations API", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```(python|ts)\n(.*?)```", section, re.S)
if not [lang for lang, _ in blocks if lang == "python"] or not [lang for lang, _ in blocks if lang == "ts"]:
    sys.exit("the section has no python or no ts snippet")
here = pathlib.Path(__file__).parent
for index, (lang, code) in enumerate(blocks):
    if lang == "python":
        path = here / f"snippet_{index}.py"
        command = [python, str(path)]
    else:
        path = here / "node" / f"snippet_{index}.mjs"
        command = [node, str(path)]
    path.write_text(code)
    print(f"README snippet {index} ({lang})", flush=True)
    try:
        subprocess.run(command, check=True, timeout=120)
    finally:
        path.unlink()
print("every snippet ran")
