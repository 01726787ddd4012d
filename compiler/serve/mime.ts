/**
 * Content-Type lookup for the files treecast publishes.
 *
 * The table is deliberately small and explicit instead of a generic mime
 * database: every entry is something that actually lands in the publish tree
 * (or in the index page's assets), and anything else falls back to
 * application/octet-stream, which is what ostree objects, summary files,
 * delta superblocks/parts (named `superblock`, `0`, `1`, ...), kernels and
 * initrds need anyway.
 */
import path from 'node:path';

/** Fallback for anything binary or unknown: clients download it verbatim. */
export const DEFAULT_MIME = 'application/octet-stream';

const TEXT = 'text/plain; charset=utf-8';

const BY_EXTENSION: Readonly<Record<string, string>> = {
  // Metadata and the browsable index.
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',

  // Boot and provisioning text. iPXE and anaconda do not care about the type,
  // but browsers then display the script instead of downloading it.
  '.txt': TEXT,
  '.ks': TEXT,
  '.ipxe': TEXT,
  '.cfg': TEXT,
  '.conf': TEXT,
  '.yaml': TEXT,
  '.yml': TEXT,
  '.md': TEXT,
  '.log': TEXT,
  '.sha256': TEXT,
  '.sha512': TEXT,

  // Image artifacts. Compressed files get their registered types (RFC 6713
  // gzip, RFC 8878 zstd) but never a Content-Encoding header: the client must
  // receive the compressed bytes exactly as published, checksums included.
  '.squashfs': DEFAULT_MIME,
  '.img': DEFAULT_MIME,
  '.iso': DEFAULT_MIME,
  '.efi': DEFAULT_MIME,
  '.gz': 'application/gzip',
  '.tgz': 'application/gzip',
  '.zst': 'application/zstd',
  '.xz': 'application/x-xz',
  '.tar': 'application/x-tar',

  // OSTree archive-repo objects: opaque (GVariant / zlib) blobs.
  '.filez': DEFAULT_MIME,
  '.file': DEFAULT_MIME,
  '.dirtree': DEFAULT_MIME,
  '.dirmeta': DEFAULT_MIME,
  '.commit': DEFAULT_MIME,
  '.commitmeta': DEFAULT_MIME,

  // Signatures. `.asc` is ASCII-armoured OpenPGP (RFC 3156). `.sig` is
  // ambiguous - ostree's summary.sig is a GVariant, gpg's is binary OpenPGP -
  // so it stays opaque bytes.
  '.asc': 'application/pgp-signature',
  '.sig': DEFAULT_MIME,
  '.gpg': 'application/pgp-keys',

  // Assets of the generated index page.
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.xml': 'application/xml',
  '.webmanifest': 'application/manifest+json',
};

/**
 * Returns the Content-Type for a file path (only the base name matters).
 * Extension matching is case-insensitive; files without a known extension -
 * including ostree's `summary`, `config` and delta parts - are octet-stream.
 */
export function lookupMime(filePath: string): string {
  const ext = path.extname(filePath).toLowerCase();
  return BY_EXTENSION[ext] ?? DEFAULT_MIME;
}
