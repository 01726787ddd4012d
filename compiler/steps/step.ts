/**
 * A build step: one module each, run in the fixed order of compiler/compile/plan.ts.
 * Steps act on ctx.root (the image root on the build host) and never spawn
 * processes except through compiler/exec.ts.
 */
import type { ImageManifest } from '../manifest/types.js';
import type { ValidManifest } from '../manifest/validate.js';
import type { Repo } from '../repo.js';
import type { AccountPlan } from '../compile/accounts.js';

export interface Package {
  name: string;
  version: string;
  arch: string;
}

export interface BuildContext {
  repo: Repo;
  image: ValidManifest;
  manifest: ImageManifest;
  ref: string;
  /** For base.source: image, the ref of the base image. */
  baseRef?: string;
  /** The image root being assembled, on the build host. */
  root: string;
  /** Scratch space for this build; removed afterwards. */
  workDir: string;
  /** Local OSTree repository (bare, see LOCAL_REPO_MODE in compile/build.ts) the image is committed to. */
  localRepo: string;
  /** SOURCE_DATE_EPOCH for everything this build writes. */
  epoch: number;
  signal: AbortSignal;
  /** Ignore cached base trees (build --force). */
  refreshBase: boolean;
  /**
   * `hardlinks`: the root starts as a hardlink checkout of the base commit, and
   * nothing may write through a file of it (rootfs.ts replaces, sandboxed
   * steps write to an overlay: layer.ts). `copy`: the old full byte copy, for
   * the equivalence test only (checkoutMode() in compile/build.ts). Default: hardlinks.
   */
  checkout?: 'hardlinks' | 'copy';
  /** Filled by the users step, read by later steps. */
  accounts?: AccountPlan;
  /** Filled by finalize: the installed packages (dpkg database). */
  packages: Package[];
  /** The version this build commits as (decided before the steps run): finalize writes it into os-release. */
  version?: string;
  /** Filled by finalize: kernel versions under /usr/lib/modules (the commit is then marked bootable). */
  kernels?: string[];
}

export interface Step {
  name: string;
  /** Programs the step runs (checked up front, so a missing one fails before any work). */
  tools: string[];
  /** Whether the manifest asks for this step at all. */
  applies(m: ImageManifest): boolean;
  run(ctx: BuildContext): Promise<string | void>;
}
