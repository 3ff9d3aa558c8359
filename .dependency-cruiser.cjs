/**
 * The import rules of iommufd-emu (docs/architecture.md draws them), checked by
 * test/layers.test.ts in `npm test`. Layers call downward only:
 *
 *   leaves       src/uapi, src/fault, src/trace,     numbers, structs, errno, injection, events,
 *                src/lib                             Refcount
 *   platform     src/platform                        the simulated machine
 *   kernel core  src/host                            files, devfs, sysfs, vfs, tasks, user copies
 *   iommu core   src/iommu                           group ownership, domains, attach
 *   iommufd      src/iommufd                         /dev/iommu and its objects
 *   vfio         src/vfio                            VFIO, which binds its devices to iommufd
 *   root         src/boot                            builds the machine, the core and the drivers
 *   front ends   src/server, src/index.ts, src/check, src/cli, src/inspector
 *
 * A module may import its own layer and any layer below it, never one above; and no set of
 * modules may import each other in a cycle. Tests (*.test.ts) and the modules only tests use
 * (_test-*.ts, beside them) may import anything.
 */

/** Each layer, lowest first: a path pattern, and the patterns of every layer above it. */
const LAYERS = [
  ['leaves', '^src/(uapi|fault|trace|lib)/'],
  ['platform', '^src/platform/'],
  ['kernel-core', '^src/host/'],
  ['iommu-core', '^src/iommu/'],
  ['iommufd', '^src/iommufd/'],
  ['vfio', '^src/vfio/'],
  ['composition-root', '^src/boot/'],
  ['front-ends', '^src/(server|check|cli|inspector)/|^src/index\\.[jt]s$'],
];

const TESTS = '(\\.test\\.[jt]s|/_test-[^/]*\\.[jt]s)$';

const upward = LAYERS.slice(0, -1).map(([name, path], i) => ({
  name: `no-upward-from-${name}`,
  comment: `${name} may import only itself and the layers below it`,
  severity: 'error',
  from: { path, pathNot: TESTS },
  to: { path: LAYERS.slice(i + 1).map(([, above]) => above) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'modules must not import each other at run time in a cycle, directly or not',
      severity: 'error',
      // Checked on the JavaScript tsc emits (test/layers.test.ts): it holds exactly the run-time
      // imports, `import type` being erased (a forward declaration, like `struct file;` in C).
      from: { path: '\\.js$', pathNot: TESTS },
      to: { circular: true },
    },
    ...upward,
    {
      name: 'no-test-support-in-sources',
      comment: 'the _test-*.ts modules are for tests only',
      severity: 'error',
      from: { path: '^src/', pathNot: TESTS },
      to: { path: '/_test-[^/]*\\.[jt]s$' },
    },
    {
      name: 'only-known-layers',
      comment: 'every source module belongs to a layer above (add new directories to LAYERS)',
      severity: 'error',
      from: {
        path: '^src/',
        pathNot: [TESTS, ...LAYERS.map(([, path]) => path)],
      },
      to: {},
    },
  ],
  options: {
    parser: 'swc',
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|native)/' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
