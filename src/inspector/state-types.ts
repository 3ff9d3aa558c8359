/**
 * The JSON the inspector serves (`GET /api/state`, `GET /api/walk`, the `/api/events` stream),
 * as types only: the server builds it (state.ts, event-log.ts) and the page (web/inspector)
 * reads it, both against these declarations. Every u64 is a hex string (`"0x2000000"`), as in
 * `--trace-json`; counts that fit a JS number stay numbers.
 */

/** A u64 spelled as JSON spells it here: `"0x2000000"`. */
export type Hex = string;

/**
 * What the emulator is running for: the program (exec), the served environment (serve), or a
 * recorded run stepped through (replay).
 */
export interface ProgramState {
  /** `exec`: PROGRAM and its arguments; `serve`: the command it runs, or empty; `replay`: the recorded program's. */
  readonly command: readonly string[];
  readonly state: 'running' | 'exited' | 'serving' | 'replaying';
  /** The program's exit status once it has exited, as exec reports it (128+N for signal N). */
  readonly exitStatus: number | null;
}

/** One PCI device and what VFIO and iommufd have made of it. */
export interface DeviceState {
  readonly bdf: string;
  readonly type: string;
  /** Its VFIO cdev (`/dev/vfio/devices/vfio0`, `.../noiommu-vfio2`); null when not bound to VFIO. */
  readonly vfio: string | null;
  /** Behind no IOMMU: every DMA it does reaches physical memory unchecked (no-IOMMU mode). */
  readonly unsafe: boolean;
  /** Its IOMMU unit and group; null for a device with none. */
  readonly iommu: string | null;
  readonly group: number | null;
  /** The machine domain it translates through now; null when blocked or without an IOMMU. */
  readonly domain: number | null;
  readonly busMaster: boolean;
  /** The iommufd context and DEVICE object id it is bound as; null when not bound. */
  readonly bound: { readonly context: number; readonly devid: number } | null;
  readonly attached: boolean;
  /** VFIO's open count of the device (opens through a bound cdev). */
  readonly openCount: number;
}

/**
 * A node of the object graph: `ctx:N` (an open /dev/iommu), `obj:N:ID` (object ID of context N),
 * `dev:BDF` (a device bound to VFIO), `domain:ID` (a machine domain, its page table).
 */
export type NodeKey = string;

/** One reference an object holds on another node: an edge of the graph. */
export interface RefState {
  readonly to: NodeKey;
  /** Why it holds it: `ioas`, `attached`, `domain`. */
  readonly label: string;
}

/** One object of a context's table, with the kernel's two reference counts. */
export interface ObjectState {
  readonly key: NodeKey;
  readonly id: number;
  readonly type: string;
  /** obj->users: long-term references (the table's, each graph edge's, each driver's). */
  readonly users: number;
  /** obj->shortterm_users: per-call references plus the table's bias (1 between calls). */
  readonly shorttermUsers: number;
  readonly published: boolean;
  readonly detail: string;
  readonly refs: readonly RefState[];
}

export interface RangeState {
  readonly start: Hex;
  readonly last: Hex;
}

/** One mapping of an IOAS (an iopt area). */
export interface AreaState {
  readonly iova: Hex;
  readonly last: Hex;
  /** `rw`, `r-`, `-w`. */
  readonly prot: string;
  /** The user VA of the first byte; null while the area has no pages. */
  readonly va: Hex | null;
  /** Whether its pages are pinned and in the domains. */
  readonly filled: boolean;
}

/** An I/O address space: its areas, reserved and allowed ranges, and the domains that mirror it. */
export interface IoasState {
  readonly key: NodeKey;
  readonly id: number;
  readonly areas: readonly AreaState[];
  /** Reserved ranges and who reserved them (a device's MSI window, a domain's aperture). */
  readonly reserved: readonly (RangeState & { readonly owner: string })[];
  /** IOMMU_IOAS_ALLOW_IOVAS ranges; empty when every IOVA is allowed. */
  readonly allowed: readonly RangeState[];
  readonly iovaAlignment: Hex;
  /** Machine domain ids, in io_pagetable order. */
  readonly domains: readonly number[];
}

/** One open of /dev/iommu (a struct iommufd_ctx). */
export interface ContextState {
  readonly key: NodeKey;
  /** Its position among the live contexts: contexts have no id in the kernel. */
  readonly index: number;
  /** References on its file (fds, dups, VFIO devices bound through it). */
  readonly fileRefs: number;
  readonly accountMode: string;
  readonly objects: readonly ObjectState[];
  readonly ioas: readonly IoasState[];
}

/** A machine domain: a page table the devices attached to it translate through. */
export interface DomainState {
  readonly key: NodeKey;
  readonly id: number;
  /** `paging` (an IOMMU unit's) or `noiommu` (iommufd's software table, no hardware). */
  readonly kind: string;
  readonly unit: string | null;
  readonly levels: number;
  readonly aperture: RangeState;
  readonly mappedBytes: Hex;
  readonly tablePages: Hex;
  readonly devices: readonly string[];
}

/** Pages contiguous in VA and PA, each pinned `pins` times. */
export interface PinnedExtentState {
  readonly va: Hex;
  readonly pa: Hex;
  readonly npages: Hex;
  readonly pins: number;
  readonly huge: boolean;
}

export interface PinnedState {
  /** Distinct 4 KiB pages with a pin. */
  readonly pinnedPages: Hex;
  /** The sum of every page's pin count. */
  readonly pins: Hex;
  /** Frames held for user pages (huge blocks whole). */
  readonly frames: Hex;
  readonly hugeBlocks: Hex;
  /**
   * By address space (`pidN/mm...` of the process that pinned): its runs in VA order, the first
   * 4096 of them (`omitted` says how many more there are).
   */
  readonly mms: readonly {
    readonly mm: string;
    readonly extents: readonly PinnedExtentState[];
    readonly omitted: number;
  }[];
}

/** `GET /api/state`: everything the page shows. */
export interface InspectorState {
  readonly version: 1;
  /** The sequence number of the last event published before the state was taken. */
  readonly seq: number;
  readonly program: ProgramState;
  /** /proc/sys/kernel/tainted. */
  readonly tainted: number;
  readonly unsafeNoiommuMode: boolean;
  readonly devices: readonly DeviceState[];
  readonly contexts: readonly ContextState[];
  readonly domains: readonly DomainState[];
  readonly pinned: PinnedState;
  readonly frames: { readonly userPage: Hex; readonly pageTable: Hex };
  /** Bytes charged to RLIMIT_MEMLOCK, by uid and by mm. */
  readonly accounting: {
    readonly user: readonly { readonly uid: number; readonly bytes: Hex }[];
    readonly mm: readonly { readonly mm: string; readonly bytes: Hex }[];
  };
  /** Objects the kernel found left behind by closed contexts. */
  readonly leaked: readonly string[];
  /** Where a replay stands when the inspector steps through a record; null when live. */
  readonly replay: ReplayState | null;
}

/** A recorded run being stepped through: the state is the replayed emulator's after a call. */
export interface ReplayState {
  /** The record file. */
  readonly file: string;
  /** The calls of the run, and the one whose state is shown: 0 before the first. */
  readonly steps: number;
  readonly step: number;
  /** The record line replayed last (0 before the first). */
  readonly line: number;
  /** Where the replay left the record, if it did: it can go no further. */
  readonly divergence: string | null;
}

/** `GET /api/record` (replay only): every call of the run and every event, in record order. */
export interface RecordState {
  readonly file: string;
  /** Step k (1-based) is calls[k - 1]: the record line of the call's trace line and its text. */
  readonly calls: readonly { readonly line: number; readonly text: string }[];
  /** The record's events, `seq` being their record line. */
  readonly events: readonly EventState[];
}

/** One table entry read by a page-table walk. */
export interface WalkStepState {
  /** levels-1 at the root, 0 at the 4 KiB level. */
  readonly level: number;
  readonly tablePa: Hex;
  readonly index: number;
  readonly ptePa: Hex;
  readonly pte: Hex;
  readonly present: boolean;
  readonly leaf: boolean;
  readonly read: boolean;
  readonly write: boolean;
  /** For a leaf, the PA it maps; for a pointer, the next table's PA. */
  readonly next: Hex | null;
}

/** `GET /api/walk?domain=ID&iova=0x...`: one IOVA translated by one domain, level by level. */
export interface WalkState {
  readonly domain: number;
  readonly iova: Hex;
  readonly levels: number;
  readonly steps: readonly WalkStepState[];
  readonly result:
    | {
        readonly kind: 'leaf';
        readonly pa: Hex;
        readonly pageSize: Hex;
        readonly read: boolean;
        readonly write: boolean;
      }
    | { readonly kind: 'not-present'; readonly level: number }
    | { readonly kind: 'outside' };
  /** The pinned user page the PA stands for, when it is one. */
  readonly frame: { readonly mm: string; readonly va: Hex; readonly pins: number } | null;
}

/**
 * One event of the `/api/events` stream (SSE `event: emu`): the fields `--trace-json` writes
 * (kind, u64 as hex, `text` the trace line), plus a sequence number, seconds since the emulator
 * started and, for a device event, the call that caused it.
 */
export interface EventState {
  readonly seq: number;
  readonly time: number;
  readonly kind: 'syscall' | 'dma' | 'iommu-fault' | 'unsafe-dma' | 'irq' | 'log';
  readonly text: string;
  /** For a device event: the seq of the program's latest store to that device's registers. */
  readonly cause?: number;
  readonly [field: string]: unknown;
}
