/* eslint-disable */
// Generated from schemas/*.json by `npm run gen:types`. Do not edit by hand.

/**
 * Where the root filesystem starts from: Debian packages (mmdebstrap), a directory in the repository, or another image of this repository.
 */
export type Base = {
  [k: string]: unknown | undefined;
} & {
  /**
   * debian: mmdebstrap; tree: a directory in the repository; image: the built commit of another image.
   */
  source: "debian" | "tree" | "image";
  /**
   * (debian) Debian suite or codename. Default: bookworm.
   */
  suite?: string;
  /**
   * (debian) mmdebstrap variant. Default: minbase.
   */
  variant?:
    | "extract"
    | "custom"
    | "essential"
    | "apt"
    | "required"
    | "minbase"
    | "buildd"
    | "important"
    | "debootstrap"
    | "standard";
  /**
   * (debian) Archive components. Default: main.
   */
  components?: string[];
  /**
   * (debian) Mirror URL. Default: the build host's apt sources.
   */
  mirror?: string;
  /**
   * (tree) Directory, relative to the repository root, copied as the starting root.
   */
  path?: string;
  /**
   * (image) Name of another image of this repository whose built commit is the base.
   */
  image?: string;
};
export type File = {
  /**
   * Absolute, normalized path inside the image.
   */
  path: string;
  /**
   * File in the repository (relative to its root) whose content is copied.
   */
  source?: string;
  /**
   * Literal file content.
   */
  content?: string;
  /**
   * Target of a symbolic link created at path (kept as written).
   */
  symlink?: string;
  mode?: OctalMode;
  owner?: Owner;
  group?: Owner;
} & File1;
/**
 * Octal permission bits as a quoted string, e.g. "0644" or "4755" for setuid.
 */
export type OctalMode = string;
/**
 * A user or group: a name defined in the image, or a numeric id.
 */
export type Owner = string | number;
export type File1 = {
  [k: string]: unknown | undefined;
};
export type UnitName = string;
/**
 * Artifacts made from the compiled tree. Default: { ostree: {} }.
 */
export type Outputs = {
  [k: string]: unknown | undefined;
} & {
  /**
   * An OSTree commit on the image's ref (always made: the other outputs are written from it).
   */
  ostree?: {
    /**
     * Hosts deploy and boot this commit with `ostree admin deploy`: it must contain a kernel and an initramfs. Default: true when packages include a linux-image-* kernel.
     */
    bootable?: boolean;
  };
  /**
   * rootfs.squashfs of the deployed layout (/usr/etc at /etc).
   */
  squashfs?: {
    /**
     * mksquashfs compressor. Default: zstd.
     */
    compression?: "zstd" | "xz" | "gzip" | "lzo" | "lz4";
    /**
     * Compression level: zstd 1-22 (default 3), gzip 1-9; xz, lzo and lz4 take none. Higher is smaller and slower: on a 203 MiB sample zstd 3 took 3.3 s, 6 took 6.6 s for 6% fewer bytes, 15 (mksquashfs's own default) about 3 minutes for 12% fewer (docs/outputs.md). Keep the default for the edit-build-boot loop; set 15-19 for release builds that many nodes download.
     */
    "compression-level"?: number;
    /**
     * Older name of compression-level (used when compression-level is not set).
     */
    level?: number;
  };
  /**
   * A tarball of the image root: rootfs.tar.<ext> in the deployed OSTree layout, or (layout: installer) <name>-<version>-installer.<ext> in a conventional root for installers, with a <name>-<version>-MANIFEST.txt beside it. gzip gives a .tgz, the type Digital Rebar image-deploy documents (image-type: tgz).
   */
  tarball?: {
    /**
     * ostree (default): the root a booted OSTree host shows (/etc from /usr/etc, kernel in /usr/lib/modules/<kver>/, /var empty and filled at boot from /usr/share/factory/var, /home and co. links into /var, /ostree and /sysroot). installer: a root a plain Debian boot uses, for Digital Rebar image-deploy and curtin: kernel and initramfs in /boot as vmlinuz-<kver> and initrd.img-<kver> with the /vmlinuz and /initrd.img links, /var with its content, /home, /root, /opt, /srv, /mnt and /usr/local real directories, no /ostree or /sysroot, and the empty /curtin directory image-deploy requires; the file is <name>-<version>-installer.<tgz|txz|tar.zst|tar> and a text MANIFEST (image, version, commit, kernel, checksum, installed packages) is published beside it. Needs a kernel with an initramfs in the image.
     */
    layout?: "ostree" | "installer";
    /**
     * Default: zstd.
     */
    compression?: "zstd" | "gzip" | "xz" | "none";
    /**
     * Compression level: zstd 1-19 (default 3), gzip 1-9 (default 6), xz 1-9 (default 6); none takes none. Higher is smaller and slower: on a 203 MiB sample zstd 3 took 3.4 s, 6 took 10 s for 6% fewer bytes, 12 over a minute for 10% fewer, 19 many minutes for 20% fewer (docs/outputs.md). Keep the default for the edit-build-boot loop; set a higher level for release builds.
     */
    "compression-level"?: number;
  };
  /**
   * rootfs.erofs of the deployed layout (mkfs.erofs).
   */
  erofs?: {
    /**
     * Default: lz4hc.
     */
    compression?: "lz4" | "lz4hc" | "none";
  };
  /**
   * disk.raw.zst (or disk.raw): a disk image a machine boots from BIOS firmware (extlinux in an MBR partition), holding an OSTree sysroot with this commit deployed. Its remote is the published tree (publish.url + /repo, verified with the signing key when signing is configured), so the host upgrades itself with `ostree admin upgrade`, and ostree rewrites the bootloader menu on every deploy (docs/outputs.md). Write it with dd (or Digital Rebar image-deploy's dd-raw / dd-zst). Building it loop-mounts the image for a moment (root).
   */
  disk?: {
    /**
     * raw.zst (default): zstd-compressed, mostly empty space costs nearly nothing to store and fetch; decompress with `zstd -d --sparse`. raw: the sparse image itself.
     */
    format?: "raw.zst" | "raw";
    /**
     * Disk size, e.g. 8G. Default: twice the sysroot plus 1 GiB (room for one upgrade), at least 2 GiB, in steps of 256 MiB.
     */
    size?: string;
    /**
     * Extra kernel arguments of the deployment (after root=UUID=... rw and the image's kernel-args). ostree keeps them across upgrades.
     */
    "kernel-args"?: string[];
  };
  /**
   * vmlinuz + initrd.img + the squashfs root + an iPXE script: the node boots the kernel and its initrd fetches the squashfs over HTTP.
   */
  diskless?: {
    /**
     * Extra kernel arguments for the diskless boot (after the image's kernel-args). treecast adds the root fetch arguments for the image's initramfs (dracut: root=live:URL; live-boot: boot=live fetch=URL).
     */
    "kernel-args"?: string[];
    /**
     * Publish the root only encrypted (docs/nodes.md): the squashfs becomes rootfs.squashfs.enc (AES-256-CTR, a new random key for every build), its key goes to private/keys/<image>/<version>/rootfs.key beside the public tree, served by `treecast serve` only to nodes of this image that present their token. The image's OSTree commit is not published, the published MANIFEST.json lists no packages nor private files, and the image may have no other output (ostree, tarball, erofs, disk) nor streams. Nodes boot it through nodes.yaml (their boot scripts carry treecast.token=${treecast-token}, an iPXE setting provisioned on each node).
     */
    encrypt?: boolean;
  };
};

/**
 * A treecast image manifest: what goes into one image, and which artifacts are made from it. Keys are kebab-case like rpm-ostree treefiles. Paths to overlays, sources and scripts are relative to the repository root; include paths are relative to the including file.
 */
export interface ImageManifest {
  /**
   * Path or URL of this schema, for editors (ignored by treecast).
   */
  $schema?: string;
  /**
   * Image name: lower-case letters, digits, '.', '_' and '-'. Names the published directory images/<name>/ and the default ref <name>/<arch>/stable.
   */
  name: string;
  /**
   * OSTree ref the image is committed to, e.g. acme/edge-host/x86_64/stable. Default: <name>/x86_64/stable.
   */
  ref?: string;
  /**
   * Release streams: more OSTree refs hosts follow, each either following every build ({}) or pinned to one published version ({ version: "2026.11.3" }). Promoting is a commit that changes a pin: `treecast plan` shows "promote NAME VERSION to STREAM" ("roll back STREAM of NAME from A to B" when the pin goes down), and `ci`/`publish` point the stream's ref at the commit already published for that version (no rebuild, same checksum, a static delta from the stream's previous commit; kickstart/<name>-<stream>.ks, boot/<name>-<stream>.ipxe, index.json and index.html list each stream). Streams are publish policy, not an image input: changing them never rebuilds the image, and retention never removes a pinned version. Merged over treecast.yaml `streams` (defaults for every image), by stream name.
   */
  streams?: {
    [k: string]: Stream | undefined;
  };
  /**
   * Manifests merged underneath this one, in order (paths relative to this file). Arrays concatenate, maps merge, scalars from the including file override.
   */
  include?: string | string[];
  /**
   * Commit version is <prefix>.<N>, N counting up from the versions already committed to the ref with this prefix (like rpm-ostree). Default: the UTC date YYYYMMDD.
   */
  "automatic-version-prefix"?: string;
  base: Base;
  /**
   * Debian packages to install (with base source debian: installed by mmdebstrap together with the base).
   */
  packages?: string[];
  /**
   * Absolute paths or globs (* within a path part, ** across parts) removed from the image after packages are installed, before overlays and files are added.
   */
  "remove-files"?: string[];
  /**
   * Directory trees (relative to the repository root) copied over the root filesystem in order. Symlinks are copied as symlinks, never followed; ownership becomes root:root, modes are kept.
   */
  overlays?: string[];
  /**
   * Single files with exact mode, owner and group (the gap of rpm-ostree#779). Each entry has a path and exactly one of source, content or symlink. Applied after overlays.
   */
  files?: File[];
  /**
   * Groups created in the image (its own /etc/group and /etc/gshadow), and in /usr/lib/sysusers.d/treecast-<name>.conf for hosts whose /etc/group diverged (docs/accounts.md).
   */
  groups?: Group[];
  /**
   * Users created in the image (its own /etc/passwd and /etc/shadow), with home directories and SSH keys. Also written, without any password, to /usr/lib/sysusers.d/treecast-<name>.conf, so a host whose /etc/passwd diverged gets them at the next boot (docs/accounts.md).
   */
  users?: User[];
  /**
   * How account ids may move between builds. Every build compares the uid and gid of each user and group (the manifest's and the packages' system ones) with the previous commit of the ref in the build repository, and fails when one changed: files on a host (/var/home, /var/lib) keep their numeric owner (docs/accounts.md).
   */
  accounts?: {
    /**
     * User and group names whose uid or gid may differ from the previous commit in this build (an intended renumbering: chown the host's files yourself). Remove the entry once built.
     */
    "allow-id-change"?: string[];
  };
  /**
   * systemd units to enable, disable or mask, applied like systemctl would without booting.
   */
  units?: {
    /**
     * Units to enable (their [Install] WantedBy=/RequiredBy= links are created).
     */
    enable?: UnitName[];
    /**
     * Units whose enablement links are removed.
     */
    disable?: UnitName[];
    /**
     * Units masked (linked to /dev/null in /etc/systemd/system).
     */
    mask?: UnitName[];
  };
  /**
   * systemd default target, e.g. multi-user.target.
   */
  "default-target"?: string;
  /**
   * Kernel command line arguments for hosts booting the image: go into kickstart `bootloader --append`, `ostree admin deploy --karg` and the iPXE script.
   */
  "kernel-args"?: string[];
  /**
   * The initramfs of every kernel in the image, built by treecast with dracut after postprocess, once per kernel and dracut inputs (cached). Default: built when the image has a kernel and /usr/bin/dracut; false: never (the image brings its own, or needs none). Packages are installed with INITRD=No, so no other initramfs is built.
   */
  initramfs?:
    | false
    | {
        /**
         * Extra dracut arguments, after treecast's `--force --no-hostonly --reproducible` and before `--kver`, e.g. [--add, livenet] or [--compress, zstd].
         */
        args?: string[];
      };
  /**
   * Shell snippets run with /bin/sh inside the image root, in a sandbox without network, after every package, overlay, file, user and unit is in place.
   */
  postprocess?: string[];
  /**
   * Path (relative to the repository root) of a script run inside the image root after the postprocess snippets, in the same sandbox.
   */
  "postprocess-script"?: string;
  /**
   * Seconds each postprocess snippet and the postprocess-script may run (default 600). A script still running then is killed with everything it started, and the build fails naming it.
   */
  "postprocess-timeout"?: number;
  /**
   * Extra commit metadata (treecast.meta.<key>) and MANIFEST.json fields.
   */
  metadata?: {
    [k: string]: (string | number | boolean) | undefined;
  };
  outputs?: Outputs;
}
/**
 * One release stream of the image: {} follows every build; { version: "2026.11.3" } pins a published version.
 */
export interface Stream {
  /**
   * The published version of this image the stream points at, e.g. "2026.11.3" (quote it: YAML reads 1.1 as a number). `ci` and `publish` refuse a version that is not published under images/<name>/ (the error lists the versions that are). Raising it promotes, lowering it rolls back. Without it the stream follows every build.
   */
  version?: string;
  /**
   * OSTree ref of the stream. Default: the image's ref with its last part replaced by the stream name (<name>/<arch>/<stream> for the default ref; <ref>/<stream> when the ref has a single part). Every ref of the repository (images and streams) must be unique, and a pinned stream may not use the image's own ref: every build is published there (give the image e.g. ref: <name>/<arch>/testing to pin <name>/<arch>/stable).
   */
  ref?: string;
}
export interface Group {
  /**
   * Group name.
   */
  name: string;
  /**
   * Numeric group id (default: the gid the group had in the previous commit of the ref when still free, else the next free id from 1000).
   */
  gid?: number;
}
export interface User {
  /**
   * User name.
   */
  name: string;
  /**
   * Numeric user id (default: the uid the user had in the previous commit of the ref when still free, else the next free id from 1000).
   */
  uid?: number;
  /**
   * Primary group (default: a group named like the user, with gid = uid).
   */
  group?: string;
  /**
   * Supplementary groups (declared in groups or present in the base).
   */
  groups?: string[];
  /**
   * Full name / comment field.
   */
  gecos?: string;
  /**
   * Home directory (default: /home/<name>; on OSTree hosts /home is a link to /var/home).
   */
  home?: string;
  /**
   * Login shell (default: /bin/bash when present, else /bin/sh).
   */
  shell?: string;
  /**
   * crypt(3) hash for /etc/shadow (default: locked, '!'). Published images are readable by anyone who reaches the HTTP tree, and a hash in them can be cracked offline: prefer ssh-authorized-keys, keep hashes to lab images (SECURITY.md). The hash is never written to sysusers.d: on an upgraded host whose /etc/shadow diverged, a user sysusers creates at boot is locked (no password login) until its password is set on the host.
   */
  "password-hash"?: string;
  /**
   * Lines written to ~/.ssh/authorized_keys (mode 0600, ~/.ssh 0700).
   */
  "ssh-authorized-keys"?: string[];
}

/**
 * Optional repository-level treecast.yaml: where images live, where they are published, signing, retention and cache. Its directory is the repository root for treecast.
 */
export interface RepoConfig {
  /**
   * Path or URL of this schema, for editors (ignored by treecast).
   */
  $schema?: string;
  /**
   * Globs (relative to the repository root) of image manifests. Default: ["images/*.yaml", "images/*.yml"]; files in sub-directories are includes, not images. A glob may not use '..' or '.git'.
   */
  images?: string[];
  /**
   * Architecture in default refs. Default: x86_64.
   */
  arch?: "x86_64" | "aarch64";
  /**
   * Release streams every image has, e.g. { testing: {} }: each follows every build of the image on its own ref (<image ref without its last part>/<stream>). An image manifest's `streams` adds to these and overrides them by name, e.g. to pin one; a pin names a version of one image, so it is only allowed there.
   */
  streams?: {
    /**
     * A stream that follows every build: {} (pins and refs are per image, in the image manifest).
     */
    [k: string]: {} | undefined;
  };
  /**
   * Build cache: local OSTree repo, base rootfs cache, apt archives, artifacts. Default: .treecast. Must resolve inside the repository (not its root, not .git, not through a symlink leading out); the TREECAST_CACHE_DIR environment variable overrides it and may point anywhere. Never an image input.
   */
  "cache-dir"?: string;
  /**
   * Timestamp for commits and artifacts. Default: $SOURCE_DATE_EPOCH, else the time of the git HEAD commit.
   */
  "source-date-epoch"?: number;
  /**
   * The published HTTP tree.
   */
  publish?: {
    /**
     * Publish directory. Default: public. Must resolve inside the repository (not its root, not .git, not through a symlink leading out); the TREECAST_PUBLISH_DIR environment variable and `publish --dir` override it and may point anywhere. Never an image input.
     */
    dir?: string;
    /**
     * Public URL the publish directory is served at, used in kickstart, iPXE and index pages. Default: http://127.0.0.1:8080
     */
    url?: string;
    /**
     * Remote name hosts give the repository in `ostree remote add`. Default: treecast
     */
    remote?: string;
    /**
     * Generate a static delta from the previously published commit of each ref. Default: true
     */
    "static-deltas"?: boolean;
    /**
     * Also generate a delta from empty (large and slow; speeds up first installs). Default: false
     */
    "delta-from-empty"?: boolean;
  };
  /**
   * GPG signing of commits, summary and SHA256SUMS.
   */
  signing?: {
    /**
     * Key id or fingerprint.
     */
    "gpg-key"?: string;
    /**
     * GnuPG home directory holding the secret key (relative to the repository root). Never an image input.
     */
    "gpg-homedir"?: string;
  };
  /**
   * How much history the publish tree keeps.
   */
  retention?: {
    /**
     * Versions kept per ref (older commits and artifacts are pruned). Default: 5
     */
    keep?: number;
  };
}
