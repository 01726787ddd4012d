import { EXIT, formatDiagnostic, type Diagnostic } from '../diagnostics.js';
import { listImageFiles, openRepo } from '../repo.js';
import { validateAll } from '../images.js';
import { checkNodes } from '../nodes/config.js';
import { printJson, type Command } from './command.js';

export const validateCommand: Command = {
  name: 'validate',
  summary: 'check image manifests against the schema and the semantic rules',
  usage: 'treecast validate [manifest...]',
  help: 'Without arguments, validates every image of the repository (treecast.yaml `images`, default images/*.yaml) and nodes.yaml.\nPrints every problem as file:line:col: key: message. Exit 0 when all are valid, 1 otherwise.',
  options: {},
  async run(ctx) {
    const repo = openRepo({ repo: ctx.repo });
    const files = ctx.positionals.length ? ctx.positionals : listImageFiles(repo);
    const result = validateAll(repo, files);
    // nodes.yaml names images: it is checked against all of them, so only when all were validated.
    const nodes = ctx.positionals.length ? undefined : checkNodes(repo, result.images);
    if (nodes && !nodes.ok) result.diagnostics.push(...nodes.diagnostics);
    if (ctx.json) {
      printJson({
        valid: result.diagnostics.length === 0,
        images: result.images.map((i) => ({ name: i.manifest.name, file: i.shown })),
        // Only with a nodes.yaml: without one, the output is what it always was.
        ...(nodes?.ok && nodes.nodes.length ? { nodes: nodes.nodes.map((n) => n.name) } : {}),
        errors: result.diagnostics.map(toJson),
      });
    } else {
      for (const d of result.diagnostics) process.stderr.write(formatDiagnostic(d) + '\n');
      if (result.diagnostics.length === 0) process.stderr.write(`${result.images.length} image manifest(s) valid${nodes?.ok && nodes.nodes.length ? `, ${nodes.nodes.length} node(s) in nodes.yaml` : ''}\n`);
      else process.stderr.write(`${result.diagnostics.length} problem(s) found\n`);
    }
    return result.diagnostics.length ? EXIT.invalid : EXIT.ok;
  },
};

function toJson(d: Diagnostic) {
  return { file: d.loc?.file, line: d.loc?.line, col: d.loc?.col, path: d.path, message: d.message, hint: d.hint, includedFrom: d.loc?.via?.map((v) => `${v.file}:${v.line}:${v.col}`), text: formatDiagnostic(d) };
}
