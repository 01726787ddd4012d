import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import type { Artifact } from './output.js';

export async function fileSha256(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function describeArtifact(type: string, p: string): Promise<Artifact> {
  return { type, file: path.basename(p), path: p, size: statSync(p).size, sha256: await fileSha256(p) };
}
