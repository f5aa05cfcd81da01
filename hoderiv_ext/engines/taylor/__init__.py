"""The Taylor engine: value, input derivatives and second derivatives of an MLP from fused kernels.

  plan                  f as Linear and activation steps (or NotServed, naming the layer)
  slots                 which jet slots a request needs; the canonical tensor read back
  sweep                 the forward and reverse sweeps over the layers, shared by every algorithm
  forward               forward Taylor mode (every request, any number of outputs)
  mixed                 mixed mode: forward tangents + one reverse sweep (scalar outputs)
  forward_over_reverse  selected Hessian rows, cost growing with the rows (scalar outputs)
  engine                run(plan, x, request, create_graph, algorithm)
"""
