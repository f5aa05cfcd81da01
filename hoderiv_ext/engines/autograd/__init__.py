"""The autograd engine: any batched callable, differentiated by torch.autograd or torch.func.

  engine   run(f, x, request, ...): the mechanisms and their choice
  nested   nested torch.autograd.grad of the batch sum (passes batched or looped)
  func     torch.func: vmap of jacrev and Hessian-vector products
  elementwise  (y, y', ...) of an elementwise callable by nested autograd
"""
