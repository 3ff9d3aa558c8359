/**
 * A reader for the declarations uAPI headers are made of: object-like and function-like
 * `#define`s, `enum` constants, and `struct`/`union` definitions with their members (anonymous
 * unions and structs flattened, the way offsetof() sees them). Not a C parser: enough for
 * include/linux/{iommufd,vfio}.h, the kernel's installed versions of them and
 * native/shim/protocol.h, which hold no typedef'd or function declarations.
 */

/** One member of a struct or union, as offsetof() can name it. */
export interface CMember {
  readonly name: string;
  /** `x[N]`: sizeof works, signedness does not. */
  readonly array: boolean;
  /** `x[]`: offsetof works, sizeof does not. */
  readonly flexible: boolean;
  /** `x : N`: neither offsetof nor sizeof. */
  readonly bitfield: boolean;
  /** A struct or union member: sizeof and offsetof, no signedness. */
  readonly aggregate: boolean;
  /** The declared type, e.g. "__u32" or "struct vfio_info_cap_header". */
  readonly type: string;
  /** Members of one anonymous union share a number (they overlay each other). */
  readonly unionGroup?: number;
}

export interface CMacro {
  readonly functionLike: boolean;
  readonly body: string;
}

export interface CHeader {
  /** `struct NAME` and `union NAME` definitions by tag, members in declaration order. */
  readonly structs: Map<string, CMember[]>;
  readonly macros: Map<string, CMacro>;
  readonly enumConstants: Set<string>;
}

/** Comments become spaces (newlines kept), continuation lines are joined. */
function clean(text: string): string {
  let out = text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '));
  out = out.replace(/\/\/[^\n]*/g, '');
  return out.replace(/\\\n/g, ' ');
}

const TOKEN = /[A-Za-z_]\w*|0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*|'(?:\\.|[^'])'|"(?:\\.|[^"])*"|\S/g;

function tokenize(text: string): string[] {
  return text.match(TOKEN) ?? [];
}

const IDENT = /^[A-Za-z_]\w*$/;

class Reader {
  private at = 0;
  private unionGroups = 0;
  private readonly tokens: string[];
  private readonly header: CHeader;

  constructor(tokens: string[], header: CHeader) {
    this.tokens = tokens;
    this.header = header;
  }

  private peek(offset = 0): string | undefined {
    return this.tokens[this.at + offset];
  }

  private next(): string {
    const t = this.tokens[this.at++];
    if (t === undefined) throw new Error('unexpected end of header');
    return t;
  }

  private expect(token: string): void {
    const t = this.next();
    if (t !== token) throw new Error(`expected '${token}', found '${t}'`);
  }

  /** Skips a balanced (...) / [...] / {...} group starting at the current token. */
  private skipGroup(): void {
    const open = this.next();
    const close = open === '(' ? ')' : open === '[' ? ']' : '}';
    let depth = 1;
    while (depth > 0) {
      const t = this.next();
      if (t === open) depth++;
      else if (t === close) depth--;
    }
  }

  /** Top level: struct/union/enum definitions; anything else is skipped to its `;`. */
  readAll(): void {
    while (this.peek() !== undefined) {
      const t = this.peek()!;
      if (
        (t === 'struct' || t === 'union') &&
        IDENT.test(this.peek(1) ?? '') &&
        this.peek(2) === '{'
      ) {
        this.next();
        this.readAggregate(this.next());
        this.skipToSemicolon();
      } else if (t === 'enum') {
        this.next();
        if (IDENT.test(this.peek() ?? '')) this.next();
        if (this.peek() === '{') this.readEnum();
        this.skipToSemicolon();
      } else {
        this.skipToSemicolon();
      }
    }
  }

  private skipToSemicolon(): void {
    while (this.peek() !== undefined && this.peek() !== ';') {
      const t = this.peek()!;
      if (t === '(' || t === '[' || t === '{') this.skipGroup();
      else this.next();
    }
    if (this.peek() === ';') this.next();
  }

  private readEnum(): void {
    this.expect('{');
    let expectName = true;
    while (this.peek() !== '}') {
      const t = this.peek()!;
      if (t === '(' || t === '[') {
        this.skipGroup();
        continue;
      }
      this.next();
      if (expectName && IDENT.test(t)) {
        this.header.enumConstants.add(t);
        expectName = false;
      } else if (t === ',') {
        expectName = true;
      }
    }
    this.expect('}');
  }

  /** Reads `{ members }` of a struct or union named `tag` (undefined: anonymous). */
  private readAggregate(tag: string | undefined): CMember[] {
    this.expect('{');
    const members: CMember[] = [];
    while (this.peek() !== '}') {
      const t = this.peek()!;
      if (t === 'struct' || t === 'union') {
        const hasTag = IDENT.test(this.peek(1) ?? '');
        const opens = this.peek(hasTag ? 2 : 1) === '{';
        if (opens) {
          const kind = this.next();
          const innerTag = hasTag ? this.next() : undefined;
          const inner = this.readAggregate(innerTag);
          if (this.peek() === ';') {
            this.next();
            // An anonymous struct or union: its members are the outer struct's.
            if (innerTag !== undefined) continue;
            if (kind === 'struct') members.push(...inner);
            else {
              const unionGroup = ++this.unionGroups;
              members.push(...inner.map((m) => ({ ...m, unionGroup })));
            }
            continue;
          }
          members.push(...this.readDeclarators(`${kind} ${innerTag ?? '(anonymous)'}`));
          continue;
        }
      }
      members.push(...this.readDeclarators(undefined));
    }
    this.expect('}');
    if (tag !== undefined) this.header.structs.set(tag, members);
    return members;
  }

  /**
   * `type a, b[4], c : 3;`: the member names after the type. `definedType`: the struct or union
   * just defined in place, when the declaration began with its body.
   */
  private readDeclarators(definedType: string | undefined): CMember[] {
    const tokens: string[] = [];
    while (this.peek() !== ';') {
      const t = this.peek()!;
      if (t === '__attribute__' || t === '__aligned') {
        this.next();
        if (this.peek() === '(') this.skipGroup();
        continue;
      }
      tokens.push(this.next());
    }
    this.expect(';');
    const out: CMember[] = [];
    // `struct foo x;` (not `struct foo *x;`) is an aggregate member; `__u32 a, b;` shares a type.
    const aggregate =
      definedType !== undefined ||
      ((tokens[0] === 'struct' || tokens[0] === 'union') && !tokens.includes('*'));
    const firstName = declaratorName(tokens.slice(0, firstComma(tokens)));
    const type = definedType ?? tokens.slice(0, tokens.indexOf(firstName ?? '')).join(' ');
    let part: string[] = [];
    const flush = (): void => {
      const name = declaratorName(part);
      if (name !== undefined) {
        const bracket = part.indexOf('[');
        out.push({
          name,
          array: bracket >= 0 && part[bracket + 1] !== ']',
          flexible: bracket >= 0 && part[bracket + 1] === ']',
          bitfield: part.includes(':'),
          aggregate,
          type,
        });
      }
      part = [];
    };
    let depth = 0;
    for (const t of tokens) {
      if (t === '[' || t === '(') depth++;
      if (t === ']' || t === ')') depth--;
      if (t === ',' && depth === 0) flush();
      else part.push(t);
    }
    flush();
    return out;
  }
}

function firstComma(tokens: string[]): number {
  const at = tokens.indexOf(',');
  return at < 0 ? tokens.length : at;
}

/** The member name of one declarator: the last identifier before `[`, `:` or the end. */
function declaratorName(part: string[]): string | undefined {
  let end = part.length;
  const bracket = part.indexOf('[');
  const colon = part.indexOf(':');
  if (bracket >= 0) end = bracket;
  if (colon >= 0 && colon < end) end = colon;
  for (let i = end - 1; i >= 0; i--) if (IDENT.test(part[i]!)) return part[i];
  return undefined;
}

/** Reads the declarations of one header's text. */
export function parseHeader(text: string): CHeader {
  const header: CHeader = { structs: new Map(), macros: new Map(), enumConstants: new Set() };
  const code: string[] = [];
  for (const line of clean(text).split('\n')) {
    const m = /^\s*#\s*(\w+)\s*(.*)$/.exec(line);
    if (m === null) {
      code.push(line);
      continue;
    }
    if (m[1] !== 'define') continue;
    const d = /^(\w+)(\()?(.*)$/.exec(m[2]!);
    if (d === null) continue;
    header.macros.set(d[1]!, { functionLike: d[2] !== undefined, body: d[3]!.trim() });
  }
  new Reader(tokenize(code.join('\n')), header).readAll();
  return header;
}

/** Whether a macro reads as an integer constant expression (no strings, braces or arguments). */
export function isIntegerMacro(macro: CMacro): boolean {
  return !macro.functionLike && macro.body !== '' && !/["{};]/.test(macro.body);
}
