/**
 * Mutants: deliberately reintroduced unwinding bugs that exist ONLY to prove the checker
 * (`iommufd-emu check`, src/check) catches the class of bug it is built for. Each mutant is a one
 * or two line hook in the kernel model, marked `// mutant: <name>`, that is dead code unless the
 * emulator was started with `IOMMUFD_EMU_MUTANT=<name>` in its environment (read once, when this
 * module loads). Nothing else may depend on them; a normal run never has one active.
 */

/** The known mutants, with the bug each one reintroduces. */
export const MUTANTS = {
  'halfbuilt-destroy':
    'iommufd device destroy assumes the igroup exists (the no-IOMMU bind review bug): a bind ' +
    'that fails before the igroup is set crashes in the unwind',
  'hwpt-ioas-ref':
    'HWPT paging alloc unwinds a failed domain allocation with a plain abort, forgetting the ' +
    'IOAS reference the HWPT took',
  'map-leaves-area':
    'iopt map_pages leaves the new areas in the IOVA tree when filling the domains fails',
  'fill-keeps-pins':
    'filling an area into the domains forgets to unpin (and unaccount) when mapping into a ' +
    'domain fails',
  'cdev-open-unwind':
    'a VFIO cdev open that fails after taking the registration reference returns without ' +
    'dropping it: the device can never be unbound again (EBUSY)',
} as const;

export type MutantName = keyof typeof MUTANTS;

/** Whether `name` is a known mutant. */
export function isMutantName(name: string): name is MutantName {
  return Object.hasOwn(MUTANTS, name);
}

/** IOMMUFD_EMU_MUTANT when it names no known mutant (ignored; the CLI says so). */
const unknownFromEnvironment: string | undefined = (() => {
  const name = process.env.IOMMUFD_EMU_MUTANT;
  return name === undefined || name === '' || isMutantName(name) ? undefined : name;
})();

function fromEnvironment(): MutantName | undefined {
  const name = process.env.IOMMUFD_EMU_MUTANT;
  return name !== undefined && isMutantName(name) ? name : undefined;
}

let active: MutantName | undefined = fromEnvironment();

/** The IOMMUFD_EMU_MUTANT value that was ignored because no mutant has that name, if any. */
export function ignoredMutantName(): string | undefined {
  return unknownFromEnvironment;
}

/** Whether mutant `name` is active. One string compare: free when none is. */
export function mutant(name: MutantName): boolean {
  return active === name;
}

/** The active mutant, if any. */
export function activeMutant(): MutantName | undefined {
  return active;
}

/**
 * Test and CLI only: switch the active mutant in this process (undefined: none), overriding the
 * environment. Returns the previous one so callers can restore it.
 */
export function setMutantForTest(name: MutantName | undefined): MutantName | undefined {
  const previous = active;
  active = name;
  return previous;
}
