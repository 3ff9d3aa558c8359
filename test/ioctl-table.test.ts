/**
 * The trace decodes every command a dispatcher registers: by the name its uAPI header gives it,
 * never as a raw number, with every field of its struct. The dispatch tables and the decoder are
 * both keyed by the command tables in src/uapi/commands.ts, so this fails if a handler is
 * registered by a number the decoder does not know.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { iommufdIoctlCommands } from '../src/iommufd/main.ts';
import { vfioCompatIoctlCommands } from '../src/iommufd/vfio-compat.ts';
import { decodeArg, describeIoctl, ioctlInfo } from '../src/trace/decode.ts';
import { IOMMUFD, type IoctlCommand, VFIO_DEVICE, VFIO_GROUP } from '../src/uapi/commands.ts';
import { type FieldTable, type StructSpec, writeFields } from '../src/uapi/struct.ts';
import { cdevIoctlCommands } from '../src/vfio/device-cdev.ts';
import { vfioGroupIoctlCommands } from '../src/vfio/group.ts';
import { pciCoreIoctlCommands } from '../src/vfio/pci-core.ts';

/** Each dispatch table, with the kind of file (fops name) its commands are issued on. */
const registered: { table: string; fileKind: string; commands: readonly IoctlCommand[] }[] = [
  { table: 'iommufd (main.ts)', fileKind: 'iommufd', commands: iommufdIoctlCommands },
  {
    table: 'VFIO container (vfio-compat.ts)',
    fileKind: 'iommufd',
    commands: vfioCompatIoctlCommands,
  },
  { table: 'VFIO group (group.ts)', fileKind: 'vfio-group', commands: vfioGroupIoctlCommands },
  { table: 'VFIO device (device-cdev.ts)', fileKind: 'vfio-dev', commands: cdevIoctlCommands },
  { table: 'VFIO device (pci-core.ts)', fileKind: 'vfio-dev', commands: pciCoreIoctlCommands },
];

/**
 * Every field set to a distinct non-zero value, so none is left out as a zero reserved field;
 * the leading size/argsz says the whole struct was passed.
 */
function sample(spec: StructSpec<FieldTable>): Uint8Array {
  const value: Record<string, number | bigint> = {};
  let n = 1;
  for (const [field, f] of Object.entries(spec.fields)) {
    value[field] = f.type === 'u64' ? 0x1000n + BigInt(n) : n;
    n++;
  }
  if (spec.fields.size?.offset === 0) value.size = spec.size;
  if (spec.fields.argsz?.offset === 0) value.argsz = spec.size;
  const bytes = new Uint8Array(spec.size);
  writeFields(spec, bytes, value as Parameters<typeof writeFields>[2]);
  return bytes;
}

describe('every registered ioctl decodes by name with its struct', () => {
  for (const { table, fileKind, commands } of registered) {
    test(table, () => {
      assert.ok(commands.length > 0, `${table} registers no command`);
      for (const command of commands) {
        const info = ioctlInfo(fileKind, command.cmd);
        assert.equal(info?.name, command.name, `0x${command.cmd.toString(16)} on ${fileKind}`);
        assert.equal(info.spec, command.spec, `${command.name}: struct`);
        const bytes = command.spec === undefined ? undefined : sample(command.spec);
        const line = describeIoctl(fileKind, command.cmd, 0x7000n, bytes, undefined);
        assert.ok(line.startsWith(command.name), `${command.name} printed as ${line}`);
        assert.doesNotMatch(line, /^0x/);
        if (command.spec === undefined) continue;
        const decoded = decodeArg(command.spec, bytes!);
        for (const field of Object.keys(command.spec.fields))
          assert.match(decoded, new RegExp(`[{ ]${field}=`), `${command.name}: ${field}`);
      }
    });
  }

  test('iommufd registers a handler for every command of its header', () => {
    const names = iommufdIoctlCommands.map((c) => c.name).sort();
    assert.deepEqual(
      names,
      Object.values(IOMMUFD)
        .map((c) => c.name)
        .sort(),
    );
    // The 22 of include/linux/iommufd.h and IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST).
    assert.equal(names.length, 23);
  });

  test('commands with no handler yet still decode by name (SET_CONTAINER, DEVICE_FEATURE)', () => {
    const group = describeIoctl(
      'vfio-group',
      VFIO_GROUP.SET_CONTAINER.cmd,
      0x7000n,
      undefined,
      undefined,
    );
    assert.equal(group, 'VFIO_GROUP_SET_CONTAINER, 0x7000');
    const feature = VFIO_DEVICE.FEATURE;
    const line = describeIoctl('vfio-dev', feature.cmd, 0x7000n, sample(feature.spec!), undefined);
    assert.equal(line, 'VFIO_DEVICE_FEATURE, {argsz=8, flags=2}');
  });

  test('a number no table has is split as _IOC does', () => {
    assert.equal(
      describeIoctl('vfio-group', 0x3b7f, 0n, undefined, undefined),
      '_IOC(_IOC_NONE, 0x3b, 0x7f, 0), 0x0',
    );
  });

  test("only the bytes inside the caller's size are decoded; => shows what the call wrote", () => {
    const spec = IOMMUFD.IOAS_ALLOC.spec;
    const input = new Uint8Array(spec.size);
    new DataView(input.buffer).setUint32(0, 8, true);
    assert.equal(
      describeIoctl('iommufd', IOMMUFD.IOAS_ALLOC.cmd, 0x7000n, input, undefined),
      'IOMMU_IOAS_ALLOC, {size=8, flags=0, ...}',
    );
    new DataView(input.buffer).setUint32(0, spec.size, true);
    const output = input.slice();
    new DataView(output.buffer).setUint32(8, 2, true);
    assert.equal(
      describeIoctl('iommufd', IOMMUFD.IOAS_ALLOC.cmd, 0x7000n, input, output),
      'IOMMU_IOAS_ALLOC, {size=12, flags=0, out_ioas_id=0} => {out_ioas_id=2}',
    );
  });
});
