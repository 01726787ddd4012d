/** The diskless fleet: nodes.yaml, node tokens, overlay archives, boot scripts (docs/nodes.md). */
export { checkNodes, loadNodes, NODES_FILE, type NodeSpec, type NodesFile, type NodesResult } from './config.js';
export { ensureNodeTokens, privateDirFor, readNodeIndex, sha256Hex, tokenFile, NODES_INDEX, type NodeIndexEntry } from './tokens.js';
export { archiveEpoch, tarArgs, writeNodeArchive } from './archive.js';
export { fleetChainScript, macHexhyp, nodeBootScript, nodeOverlayUrl, publishNodes, type NodeBoot, type PublishedNode, type PublishNodesOptions } from './publish-nodes.js';
export { affectedNodes, type AffectedNode } from './affected.js';
