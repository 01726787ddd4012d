/** The CLI verbs, in the order `treecast --help` lists them. */
import type { Command } from './command.js';
import { validateCommand } from './validate.js';
import { doctorCommand } from './doctor.js';
import { buildCommand } from './build.js';
import { publishCommand } from './publish.js';
import { serveCommand } from './serve.js';
import { keygenCommand } from './keygen.js';
import { planCommand } from './plan.js';
import { diffCommand } from './diff.js';
import { ciCommand } from './ci.js';
import { watchCommand } from './watch.js';
import { installTestCommand } from './install-test.js';

export const commands: Command[] = [validateCommand, planCommand, buildCommand, publishCommand, serveCommand, diffCommand, ciCommand, watchCommand, installTestCommand, keygenCommand, doctorCommand];
