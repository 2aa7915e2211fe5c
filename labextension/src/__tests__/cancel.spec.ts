import { CANCELLED_STATUS, isCancelledStart, quietCancel } from '../cancel';

class FakeContext {
  session: unknown = 'a session';
  errorsShown: unknown[] = [];
  isDisposed = false;
  _handleNewSession(session: null): void {
    this.session = session;
  }
  async _handleSessionError(error: unknown): Promise<void> {
    this._handleNewSession(null);
    this.errorsShown.push(error);
  }
}

const cancelled = { message: 'cancelled', response: { status: 400, statusText: CANCELLED_STATUS } };
const refused = { message: 'Bad partition', response: { status: 400, statusText: 'Bad Request' } };

describe('a start cancelled in the resource dialog', () => {
  it('is told apart from other failed starts', () => {
    expect(isCancelledStart(cancelled)).toBe(true);
    expect(isCancelledStart(refused)).toBe(false);
    expect(isCancelledStart(new Error('network'))).toBe(false);
    expect(isCancelledStart(null)).toBe(false);
  });

  it('shows no error box and leaves no kernel; other errors keep theirs', async () => {
    const undo = quietCancel(FakeContext.prototype);
    try {
      const context = new FakeContext();
      await context._handleSessionError(cancelled);
      expect(context.session).toBeNull();
      expect(context.errorsShown).toEqual([]);
      await context._handleSessionError(refused); // a real error still shows its box
      expect(context.errorsShown).toEqual([refused]);
    } finally {
      undo();
    }
    const after = new FakeContext();
    await after._handleSessionError(cancelled);
    expect(after.errorsShown).toEqual([cancelled]);
  });
});
