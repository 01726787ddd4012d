import path from 'node:path';
import { fileSha256, hostFileSize } from '../compile/host-files.js';
import type { Artifact } from './output.js';

export { fileSha256 };

export async function describeArtifact(type: string, p: string): Promise<Artifact> {
  return { type, file: path.basename(p), path: p, size: hostFileSize(p), sha256: await fileSha256(p) };
}
