/**
 * The library API: create an emulated kernel in-process and act as processes against it.
 *
 * ```ts
 * const emu = createEmulator();
 * const proc = emu.spawn();
 * const fd = proc.open('/dev/iommu');
 * ```
 */
import { Kernel, type KernelOptions } from './boot/kernel.ts';
import { SimProcess, type SimProcessOptions } from './host/sim-process.ts';

export { Kernel, type KernelOptions } from './boot/kernel.ts';
export {
  CAP_FULL_SET,
  CAP_IPC_LOCK,
  CAP_SYS_RAWIO,
  CAP_SYS_RESOURCE,
  type Credentials,
  capName,
  parseCapSet,
} from './host/credentials.ts';
export { SimulatedMemory } from './host/sim-memory.ts';
export { SimProcess, type SimProcessOptions } from './host/sim-process.ts';
export type { Stat } from './host/vfs.ts';
export { Errno, errnoName } from './uapi/errno.ts';
export * as ioctl from './uapi/ioctl.ts';
export * as iommufd from './uapi/iommufd.ts';
export { decodeStruct, encodeStruct } from './uapi/struct.ts';

export interface Emulator {
  readonly kernel: Kernel;
  /** A new simulated process (root with all capabilities unless told otherwise). */
  spawn(options?: SimProcessOptions): SimProcess;
}

export function createEmulator(options: KernelOptions = {}): Emulator {
  const kernel = new Kernel(options);
  return {
    kernel,
    spawn: (processOptions = {}) => new SimProcess(kernel, processOptions),
  };
}
