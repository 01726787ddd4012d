/** The manifest and config types, generated from schemas/ so the two never drift apart. */
export type { ImageManifest, RepoConfig, File as FileEntry, User, Group, Base, Outputs } from './types.generated.js';
